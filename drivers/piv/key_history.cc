#include "drivers/piv/key_history.h"

#include "drivers/piv/ber_tlv.h"

namespace dojang::piv {

namespace {

constexpr std::uint32_t kOnCardTag = 0xC1;
constexpr std::uint32_t kOffCardTag = 0xC2;
constexpr std::uint32_t kUrlTag = 0xF3;
constexpr std::uint32_t kErrorDetectionTag = 0xFE;

}  // namespace

unsigned onCardCertificateCount(const std::optional<Bytes>& history) {
  if (!history) {
    return 0;
  }
  const auto count = findTlv(*history, kOnCardTag);
  return count && count->size() == 1 ? (*count)[0] : 0;
}

Bytes keyHistoryWithOnCardCount(const std::optional<Bytes>& history, std::uint8_t count) {
  Bytes value;
  const std::uint8_t onCard[] = {count};
  appendTlv(value, kOnCardTag, onCard);
  const auto offCard = history ? findTlv(*history, kOffCardTag) : std::nullopt;
  const std::uint8_t noneOffCard[] = {0};
  appendTlv(value, kOffCardTag, offCard && offCard->size() == 1 ? *offCard : std::span<const std::uint8_t>(noneOffCard));
  if (const auto url = history ? findTlv(*history, kUrlTag) : std::nullopt) {
    appendTlv(value, kUrlTag, *url);
  }
  appendTlv(value, kErrorDetectionTag, {});
  return value;
}

}  // namespace dojang::piv
