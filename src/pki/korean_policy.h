// Korean accredited certificates (공동인증서): which CA issued a certificate and for what use,
// recognised from the first certificatePolicies OID. Sources: shared/reference/korean-pki.md.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace dojang::pki {

enum class Holder { Personal, Corporate, Unspecified };

struct KoreanPolicy {
  std::string_view oid;
  std::string_view brand;     // "SignKorea", "yessign", "SignGate", "CrossCert", "TradeSign"
  std::string_view caOperator;  // the company running the CA: "Koscom", "KFTC", "KICA", ...
  std::string_view typeKo;    // "범용 개인"
  std::string_view typeEn;    // "general purpose, personal"
  Holder holder = Holder::Unspecified;
  bool generalPurpose = false;  // 범용: usable everywhere; otherwise 용도제한 (restricted use)
  bool disputed = false;        // sources disagree on what this OID means; the label says so
};

// Every policy OID dojang recognises.
[[nodiscard]] std::span<const KoreanPolicy> koreanPolicies() noexcept;

// The policy for a dotted OID, or nullopt for anything not in the table.
[[nodiscard]] std::optional<KoreanPolicy> findKoreanPolicy(std::string_view oid) noexcept;

// "SignKorea 범용 개인": brand and Korean type, as people see it in bank and CA dialogs.
[[nodiscard]] std::string koreanLabel(const KoreanPolicy& policy);
// "SignKorea general purpose, personal".
[[nodiscard]] std::string englishLabel(const KoreanPolicy& policy);

}  // namespace dojang::pki
