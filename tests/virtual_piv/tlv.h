// Byte strings, hex text and BER-TLV (ISO 7816-4 / SP 800-73-4 Part 2 annex) for the virtual card.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace dojang::virtual_piv {

using Bytes = std::vector<std::uint8_t>;

// "00 A4 04 00" style, for the APDU log.
std::string spacedHex(std::span<const std::uint8_t> bytes);
// Plain lower-case hex, for the state file.
std::string hexText(std::span<const std::uint8_t> bytes);
// Accepts upper and lower case, no separators; nullopt on anything else.
std::optional<Bytes> parseHex(std::string_view text);

// A tag of one to three bytes (0x7C, 0x7F49, 0x5FC105) followed by a DER length and the value.
Bytes tlv(std::uint32_t tag, std::span<const std::uint8_t> value);
void appendTlv(Bytes& out, std::uint32_t tag, std::span<const std::uint8_t> value);

struct TlvItem {
  std::uint32_t tag = 0;
  Bytes value;
};

// A sequence of BER-TLVs filling `bytes` exactly; nullopt when malformed.
std::optional<std::vector<TlvItem>> parseTlvs(std::span<const std::uint8_t> bytes);
// The first item with `tag`, or nullptr.
const TlvItem* findTlv(const std::vector<TlvItem>& items, std::uint32_t tag);

}  // namespace dojang::virtual_piv
