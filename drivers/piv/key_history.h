// The Key History object (SP 800-73-4 Part 1, 3.3.2; tag 5FC10C): 53 { C1 keysWithOnCardCerts,
// C2 keysWithOffCardCerts, [F3 offCardCertURL], FE }. The retired key slots 82, 83, ... hold
// certificates up to keysWithOnCardCerts, and OpenSC reads no retired slot beyond that count, so
// a certificate written to a retired slot is visible to OpenSC only once the count covers it.
// Cards do not keep the count themselves (a YubiKey leaves it to whoever writes certificates).
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

namespace dojang::piv {

using Bytes = std::vector<std::uint8_t>;

inline constexpr std::uint32_t kKeyHistoryTag = 0x5FC10C;

// keysWithOnCardCerts of the object's value (the content of its 53 wrapper); 0 without one.
[[nodiscard]] unsigned onCardCertificateCount(const std::optional<Bytes>& history);
// The object's value with keysWithOnCardCerts set to `count`; keysWithOffCardCerts and the URL of
// an existing object are kept.
[[nodiscard]] Bytes keyHistoryWithOnCardCount(const std::optional<Bytes>& history, std::uint8_t count);

}  // namespace dojang::piv
