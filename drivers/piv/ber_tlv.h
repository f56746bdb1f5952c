// The BER-TLV subset PIV uses (SP 800-73-4 Part 1, 3.3; ISO/IEC 7816-4 clause 5.2): tags of one
// to three bytes, definite lengths of up to three length bytes.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace dojang::piv {

using Bytes = std::vector<std::uint8_t>;

struct Tlv {
  std::uint32_t tag = 0;  // the tag bytes, big-endian (5FC105, 7F49, 53)
  std::span<const std::uint8_t> value;
};

// The TLVs one after the other in `data`; throws Error(CKR_DEVICE_ERROR) on a malformed one.
// Padding bytes 00 and FF between objects are skipped.
[[nodiscard]] std::vector<Tlv> parseTlvs(std::span<const std::uint8_t> data);
// The value of the first TLV with `tag` among those in `data`.
[[nodiscard]] std::optional<std::span<const std::uint8_t>> findTlv(std::span<const std::uint8_t> data,
                                                                    std::uint32_t tag);
// Tag, length, value.
[[nodiscard]] Bytes encodeTlv(std::uint32_t tag, std::span<const std::uint8_t> value);
void appendTlv(Bytes& out, std::uint32_t tag, std::span<const std::uint8_t> value);

}  // namespace dojang::piv
