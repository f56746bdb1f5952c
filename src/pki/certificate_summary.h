// What a person needs to know about one X.509 certificate: who, issued by whom, which key, valid
// until when, which Korean certificate type, and whether it is time to renew.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "src/pki/korean_policy.h"

namespace dojang::pki {

// Korean CAs allow renewal from 30 days before expiry (and the seed guide recommends one month);
// after expiry only a new issuance helps.
inline constexpr std::int64_t kRenewalWindowDays = 30;

enum class RenewalAdvice {
  Ok,        // more than kRenewalWindowDays left
  RenewNow,  // inside the renewal window, still valid
  Expired,   // past notAfter: renewal is no longer possible, a new issuance is needed
};

// "ok", "renew now", "expired".
[[nodiscard]] std::string_view renewalAdviceText(RenewalAdvice advice) noexcept;

struct CertificateSummary {
  std::string subject;       // one line, UTF-8, RFC 2253 order: "CN=홍길동()...,OU=개인,O=SignKorea,C=KR"
  std::string issuer;        // same form
  std::string commonName;    // the subject's CN alone, "" if none
  std::string serialHex;     // uppercase hex, no separators
  std::string keyAlgorithm;  // "RSA-2048", "EC P-256", "Ed25519", ...
  std::string notBefore;     // ISO 8601 UTC: "2025-01-31T09:00:00Z"
  std::string notAfter;
  std::chrono::system_clock::time_point notBeforeTime;
  std::chrono::system_clock::time_point notAfterTime;
  std::int64_t daysLeft = 0;  // whole days from `now` to notAfter, rounded down (negative: expired)
  std::string policyOid;      // first certificatePolicies entry, "" if the extension is absent
  std::optional<KoreanPolicy> koreanPolicy;  // recognised Korean type, if any
  RenewalAdvice renewal = RenewalAdvice::Ok;
  std::string sha256Fingerprint;  // uppercase hex pairs joined by ':'
};

// Parses DER bytes. Throws dojang::Error (ErrorKind::BadInput) if they are not one certificate.
[[nodiscard]] CertificateSummary summarizeCertificate(std::span<const std::uint8_t> der,
                                                      std::chrono::system_clock::time_point now);

// ISO 8601 UTC with second precision, "Z" suffix.
[[nodiscard]] std::string formatIso8601Utc(std::chrono::system_clock::time_point time);

}  // namespace dojang::pki
