#include "src/pki/korean_policy.h"

#include <algorithm>
#include <array>

namespace dojang::pki {

namespace {

constexpr Holder kPersonal = Holder::Personal;
constexpr Holder kCorporate = Holder::Corporate;
constexpr Holder kEither = Holder::Unspecified;

// Only OIDs listed in korean-pki.md. Arcs:
//   Koscom / SignKorea 1.2.410.200004.5.1.1.*   yessign (KFTC) 1.2.410.200005.1.1.*
//   KICA / SignGate    1.2.410.200004.5.2.1.*   CrossCert      1.2.410.200004.5.4.1.*
//   TradeSign (KTNET)  1.2.410.200012.1.1.*
constexpr std::array kPolicies{
    // SignKorea
    KoreanPolicy{"1.2.410.200004.5.1.1.1", "SignKorea", "Koscom", "용도제한 개인", "restricted use, personal", kPersonal, false, false},
    KoreanPolicy{"1.2.410.200004.5.1.1.3", "SignKorea", "Koscom", "용도제한 법인", "restricted use, corporate", kCorporate, false, false},
    KoreanPolicy{"1.2.410.200004.5.1.1.5", "SignKorea", "Koscom", "범용 개인", "general purpose, personal", kPersonal, true, false},
    KoreanPolicy{"1.2.410.200004.5.1.1.7", "SignKorea", "Koscom", "범용 법인", "general purpose, corporate", kCorporate, true, false},
    KoreanPolicy{"1.2.410.200004.5.1.1.9", "SignKorea", "Koscom", "증권·보험 (용도제한 개인)", "securities and insurance (restricted use, personal)", kPersonal, false, false},
    KoreanPolicy{"1.2.410.200004.5.1.1.9.2", "SignKorea", "Koscom", "신용카드용", "credit card", kPersonal, false, false},
    // .10, .11 and .12 are labelled differently by different sources. We do not guess: the label
    // names both readings (국세청용 per one source, "Silver" per others) and carries the flag.
    KoreanPolicy{"1.2.410.200004.5.1.1.10", "SignKorea", "Koscom", "용도제한 (출처마다 용도 다름)", "restricted use (sources disagree)", kEither, false, true},
    KoreanPolicy{"1.2.410.200004.5.1.1.11", "SignKorea", "Koscom", "국세청용 또는 Silver 개인 (출처마다 다름)", "tax (NTS) or Silver, personal (sources disagree)", kPersonal, false, true},
    KoreanPolicy{"1.2.410.200004.5.1.1.12", "SignKorea", "Koscom", "국세청용 또는 Silver 법인 (출처마다 다름)", "tax (NTS) or Silver, corporate (sources disagree)", kCorporate, false, true},
    // yessign
    KoreanPolicy{"1.2.410.200005.1.1.1", "yessign", "KFTC", "범용 개인", "general purpose, personal", kPersonal, true, false},
    KoreanPolicy{"1.2.410.200005.1.1.2", "yessign", "KFTC", "은행·신용카드·보험 법인", "banking, credit card, insurance, corporate", kCorporate, false, false},
    KoreanPolicy{"1.2.410.200005.1.1.4", "yessign", "KFTC", "은행·신용카드·보험 개인", "banking, credit card, insurance, personal", kPersonal, false, false},
    KoreanPolicy{"1.2.410.200005.1.1.5", "yessign", "KFTC", "범용 법인", "general purpose, corporate", kCorporate, true, false},
    KoreanPolicy{"1.2.410.200005.1.1.6.1", "yessign", "KFTC", "기업뱅킹", "corporate banking", kCorporate, false, false},
    KoreanPolicy{"1.2.410.200005.1.1.6.2", "yessign", "KFTC", "신용카드 개인", "credit card, personal", kPersonal, false, false},
    KoreanPolicy{"1.2.410.200005.1.1.6.3", "yessign", "KFTC", "조달청", "public procurement (PPS)", kEither, false, false},
    KoreanPolicy{"1.2.410.200005.1.1.6.4", "yessign", "KFTC", "퇴직연금", "retirement pension", kEither, false, false},
    KoreanPolicy{"1.2.410.200005.1.1.6.8", "yessign", "KFTC", "전자세금용", "electronic tax invoice", kEither, false, false},
    // KICA / SignGate
    KoreanPolicy{"1.2.410.200004.5.2.1.1", "SignGate", "KICA", "범용 법인", "general purpose, corporate", kCorporate, true, false},
    KoreanPolicy{"1.2.410.200004.5.2.1.2", "SignGate", "KICA", "범용 개인", "general purpose, personal", kPersonal, true, false},
    KoreanPolicy{"1.2.410.200004.5.2.1.7.1", "SignGate", "KICA", "은행·보험", "banking and insurance", kEither, false, false},
    KoreanPolicy{"1.2.410.200004.5.2.1.7.2", "SignGate", "KICA", "증권·보험", "securities and insurance", kEither, false, false},
    KoreanPolicy{"1.2.410.200004.5.2.1.7.3", "SignGate", "KICA", "신용카드", "credit card", kEither, false, false},
    KoreanPolicy{"1.2.410.200004.5.2.1.5001", "SignGate", "KICA", "국세청용", "tax (NTS Hometax)", kEither, false, false},
    // CrossCert
    KoreanPolicy{"1.2.410.200004.5.4.1.1", "CrossCert", "Korea Electronic Certification Authority", "범용 개인", "general purpose, personal", kPersonal, true, false},
    KoreanPolicy{"1.2.410.200004.5.4.1.2", "CrossCert", "Korea Electronic Certification Authority", "범용 법인", "general purpose, corporate", kCorporate, true, false},
    KoreanPolicy{"1.2.410.200004.5.4.1.74", "CrossCert", "Korea Electronic Certification Authority", "국세청용", "tax (NTS Hometax)", kEither, false, false},
    KoreanPolicy{"1.2.410.200004.5.4.1.101", "CrossCert", "Korea Electronic Certification Authority", "은행·보험", "banking and insurance", kEither, false, false},
    KoreanPolicy{"1.2.410.200004.5.4.1.102", "CrossCert", "Korea Electronic Certification Authority", "증권", "securities", kEither, false, false},
    KoreanPolicy{"1.2.410.200004.5.4.1.103", "CrossCert", "Korea Electronic Certification Authority", "신용카드", "credit card", kEither, false, false},
    KoreanPolicy{"1.2.410.200004.5.4.1.104", "CrossCert", "Korea Electronic Certification Authority", "전자민원", "e-government services", kEither, false, false},
    // TradeSign
    KoreanPolicy{"1.2.410.200012.1.1.1", "TradeSign", "KTNET", "범용 개인", "general purpose, personal", kPersonal, true, false},
    KoreanPolicy{"1.2.410.200012.1.1.3", "TradeSign", "KTNET", "범용 법인", "general purpose, corporate", kCorporate, true, false},
    KoreanPolicy{"1.2.410.200012.1.1.101", "TradeSign", "KTNET", "은행·보험", "banking and insurance", kEither, false, false},
    KoreanPolicy{"1.2.410.200012.1.1.103", "TradeSign", "KTNET", "증권·보험", "securities and insurance", kEither, false, false},
    KoreanPolicy{"1.2.410.200012.1.1.105", "TradeSign", "KTNET", "신용카드", "credit card", kEither, false, false},
};

}  // namespace

std::span<const KoreanPolicy> koreanPolicies() noexcept { return kPolicies; }

std::optional<KoreanPolicy> findKoreanPolicy(std::string_view oid) noexcept {
  const auto* found = std::find_if(kPolicies.begin(), kPolicies.end(),
                                   [oid](const KoreanPolicy& policy) { return policy.oid == oid; });
  if (found == kPolicies.end()) {
    return std::nullopt;
  }
  return *found;
}

std::string koreanLabel(const KoreanPolicy& policy) {
  return std::string(policy.brand) + " " + std::string(policy.typeKo);
}

std::string englishLabel(const KoreanPolicy& policy) {
  return std::string(policy.brand) + " " + std::string(policy.typeEn);
}

}  // namespace dojang::pki
