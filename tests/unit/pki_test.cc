// src/pki: certificate summaries and Korean policy recognition, on certificates made here.
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <cstdio>
#include <chrono>
#include <ctime>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "src/common/errors/error.h"
#include "src/common/ossl/owners.h"
#include "src/pki/certificate_summary.h"
#include "src/pki/korean_policy.h"

namespace {

using Clock = std::chrono::system_clock;
using dojang::pki::RenewalAdvice;

using KeyPtr = dojang::PkeyPtr;
using dojang::X509Ptr;

Clock::time_point fixedNow() {
  std::tm parts{};
  parts.tm_year = 2025 - 1900;
  parts.tm_mon = 2;  // March
  parts.tm_mday = 1;
  parts.tm_hour = 9;
  return Clock::from_time_t(::timegm(&parts));
}

const KeyPtr& ecKey() {
  static const KeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  REQUIRE(key);
  return key;
}

const KeyPtr& rsaKey() {
  static const KeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<std::size_t>(2048)));
  REQUIRE(key);
  return key;
}

struct CertSpec {
  std::string commonName = "홍길동()0001234567890123";
  std::string organization = "SignKorea";
  std::string policies;  // "" = no certificatePolicies extension; else "oid1,oid2"
  Clock::time_point notBefore = fixedNow() - std::chrono::days(165);
  Clock::time_point notAfter = fixedNow() + std::chrono::days(200);
  long serial = 0x1A2B3C;
  EVP_PKEY* key = nullptr;  // default: the EC key
};

void setName(X509_NAME* name, const CertSpec& spec) {
  auto add = [name](const char* field, const std::string& value) {
    REQUIRE(X509_NAME_add_entry_by_txt(name, field, MBSTRING_UTF8,
                                       reinterpret_cast<const unsigned char*>(value.data()),
                                       static_cast<int>(value.size()), -1, 0) == 1);
  };
  add("C", "KR");
  add("O", spec.organization);
  add("OU", "XYZ은행");
  // Korean CAs often encode Hangul as BMPString: "개인" is U+AC1C U+C778.
  const std::array<unsigned char, 4> bmpPersonal{0xAC, 0x1C, 0xC7, 0x78};
  REQUIRE(X509_NAME_add_entry_by_NID(name, NID_organizationalUnitName, V_ASN1_BMPSTRING,
                                     bmpPersonal.data(), static_cast<int>(bmpPersonal.size()), -1,
                                     0) == 1);
  add("CN", spec.commonName);
}

std::vector<std::uint8_t> makeCertificate(const CertSpec& spec) {
  EVP_PKEY* key = spec.key != nullptr ? spec.key : ecKey().get();
  X509Ptr cert(X509_new());
  REQUIRE(cert);
  REQUIRE(X509_set_version(cert.get(), X509_VERSION_3) == 1);
  REQUIRE(ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), spec.serial) == 1);
  REQUIRE(ASN1_TIME_set(X509_getm_notBefore(cert.get()), Clock::to_time_t(spec.notBefore)) != nullptr);
  REQUIRE(ASN1_TIME_set(X509_getm_notAfter(cert.get()), Clock::to_time_t(spec.notAfter)) != nullptr);
  setName(X509_get_subject_name(cert.get()), spec);
  X509_NAME* issuer = X509_get_issuer_name(cert.get());
  REQUIRE(X509_NAME_add_entry_by_txt(issuer, "C", MBSTRING_UTF8,
                                     reinterpret_cast<const unsigned char*>("KR"), -1, -1, 0) == 1);
  REQUIRE(X509_NAME_add_entry_by_txt(issuer, "O", MBSTRING_UTF8,
                                     reinterpret_cast<const unsigned char*>("Test CA 인증기관"), -1,
                                     -1, 0) == 1);
  REQUIRE(X509_set_pubkey(cert.get(), key) == 1);
  if (!spec.policies.empty()) {
    // certificatePolicies built directly: X509V3_EXT_conf would want a config database.
    dojang::CertificatePoliciesPtr policies(
        sk_POLICYINFO_new_null());
    REQUIRE(policies);
    std::size_t start = 0;
    while (start <= spec.policies.size()) {
      const std::size_t comma = std::min(spec.policies.find(',', start), spec.policies.size());
      const std::string oid = spec.policies.substr(start, comma - start);
      POLICYINFO* info = POLICYINFO_new();
      REQUIRE(info != nullptr);
      info->policyid = OBJ_txt2obj(oid.c_str(), 1);
      REQUIRE(info->policyid != nullptr);
      REQUIRE(sk_POLICYINFO_push(policies.get(), info) > 0);
      start = comma + 1;
    }
    REQUIRE(X509_add1_ext_i2d(cert.get(), NID_certificate_policies, policies.get(), 0,
                              X509V3_ADD_DEFAULT) == 1);
  }
  REQUIRE(X509_sign(cert.get(), key, EVP_sha256()) > 0);
  unsigned char* der = nullptr;
  const int size = i2d_X509(cert.get(), &der);
  REQUIRE(size > 0);
  std::vector<std::uint8_t> bytes(der, der + size);
  OPENSSL_free(der);
  return bytes;
}

std::string sha256Colons(const std::vector<std::uint8_t>& data) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int size = 0;
  REQUIRE(EVP_Digest(data.data(), data.size(), digest.data(), &size, EVP_sha256(), nullptr) == 1);
  std::string text;
  char pair[4];
  for (unsigned int i = 0; i < size; ++i) {
    std::snprintf(pair, sizeof pair, "%02X", digest[i]);
    text += (i == 0 ? "" : ":");
    text += pair;
  }
  return text;
}

}  // namespace

TEST_CASE("a SignKorea general-purpose personal certificate is summarised field by field", "[pki]") {
  CertSpec spec;
  spec.policies = "1.2.410.200004.5.1.1.5,1.2.410.200005.1.1.1";
  spec.notBefore = fixedNow() - std::chrono::days(165);
  spec.notAfter = fixedNow() + std::chrono::days(200);
  const auto der = makeCertificate(spec);

  const auto summary = dojang::pki::summarizeCertificate(der, fixedNow());
  CHECK(summary.subject == "CN=홍길동()0001234567890123,OU=개인,OU=XYZ은행,O=SignKorea,C=KR");
  CHECK(summary.commonName == "홍길동()0001234567890123");
  CHECK(summary.issuer == "O=Test CA 인증기관,C=KR");
  CHECK(summary.serialHex == "1A2B3C");
  CHECK(summary.keyAlgorithm == "EC P-256");
  CHECK(summary.notBefore == "2024-09-17T09:00:00Z");
  CHECK(summary.notAfter == "2025-09-17T09:00:00Z");
  CHECK(summary.daysLeft == 200);
  CHECK(summary.renewal == RenewalAdvice::Ok);
  CHECK(dojang::pki::renewalAdviceText(summary.renewal) == "ok");
  // The first policy identifies the type, whatever follows it.
  CHECK(summary.policyOid == "1.2.410.200004.5.1.1.5");
  REQUIRE(summary.koreanPolicy.has_value());
  CHECK(dojang::pki::koreanLabel(*summary.koreanPolicy) == "SignKorea 범용 개인");
  CHECK(dojang::pki::englishLabel(*summary.koreanPolicy) == "SignKorea general purpose, personal");
  CHECK(summary.koreanPolicy->caOperator == "Koscom");
  CHECK(summary.koreanPolicy->generalPurpose);
  CHECK(summary.koreanPolicy->holder == dojang::pki::Holder::Personal);
  CHECK(summary.sha256Fingerprint == sha256Colons(der));
  CHECK(summary.sha256Fingerprint.size() == 32 * 3 - 1);
}

TEST_CASE("renewal advice follows the 30-day window", "[pki]") {
  struct Case {
    std::chrono::seconds untilExpiry;
    std::int64_t daysLeft;
    RenewalAdvice advice;
  };
  using std::chrono::days;
  using std::chrono::seconds;
  const std::vector<Case> cases{
      {days(200), 200, RenewalAdvice::Ok},
      {days(31), 31, RenewalAdvice::Ok},
      {days(30) + seconds(1), 30, RenewalAdvice::Ok},
      {days(30), 30, RenewalAdvice::RenewNow},
      {days(10), 10, RenewalAdvice::RenewNow},
      {days(10) - seconds(1), 9, RenewalAdvice::RenewNow},
      {seconds(1), 0, RenewalAdvice::RenewNow},
      {seconds(0), 0, RenewalAdvice::Expired},
      {-seconds(1), -1, RenewalAdvice::Expired},
      {-days(3), -3, RenewalAdvice::Expired},
  };
  for (const auto& item : cases) {
    CertSpec spec;
    spec.policies = "1.2.410.200005.1.1.1";
    spec.notBefore = fixedNow() - std::chrono::days(365);
    spec.notAfter = fixedNow() + item.untilExpiry;
    const auto summary = dojang::pki::summarizeCertificate(makeCertificate(spec), fixedNow());
    INFO("seconds until expiry: " << item.untilExpiry.count());
    CHECK(summary.daysLeft == item.daysLeft);
    CHECK(summary.renewal == item.advice);
  }
  CHECK(dojang::pki::renewalAdviceText(RenewalAdvice::RenewNow) == "renew now");
  CHECK(dojang::pki::renewalAdviceText(RenewalAdvice::Expired) == "expired");
}

TEST_CASE("certificates expiring in 10 days and already expired", "[pki]") {
  CertSpec soon;
  soon.policies = "1.2.410.200004.5.2.1.2";
  soon.notAfter = fixedNow() + std::chrono::days(10);
  const auto soonSummary = dojang::pki::summarizeCertificate(makeCertificate(soon), fixedNow());
  CHECK(soonSummary.daysLeft == 10);
  CHECK(soonSummary.renewal == RenewalAdvice::RenewNow);
  REQUIRE(soonSummary.koreanPolicy);
  CHECK(dojang::pki::koreanLabel(*soonSummary.koreanPolicy) == "SignGate 범용 개인");

  CertSpec expired;
  expired.policies = "1.2.410.200004.5.4.1.2";
  expired.notBefore = fixedNow() - std::chrono::days(400);
  expired.notAfter = fixedNow() - std::chrono::days(35);
  const auto expiredSummary = dojang::pki::summarizeCertificate(makeCertificate(expired), fixedNow());
  CHECK(expiredSummary.daysLeft == -35);
  CHECK(expiredSummary.renewal == RenewalAdvice::Expired);
  REQUIRE(expiredSummary.koreanPolicy);
  CHECK(dojang::pki::koreanLabel(*expiredSummary.koreanPolicy) == "CrossCert 범용 법인");
  CHECK(expiredSummary.koreanPolicy->holder == dojang::pki::Holder::Corporate);
}

TEST_CASE("each CA's policy OIDs are recognised from a certificate", "[pki]") {
  const std::vector<std::pair<std::string, std::string>> expected{
      {"1.2.410.200004.5.1.1.7", "SignKorea 범용 법인"},
      {"1.2.410.200004.5.1.1.9", "SignKorea 증권·보험 (용도제한 개인)"},
      {"1.2.410.200004.5.1.1.9.2", "SignKorea 신용카드용"},
      {"1.2.410.200005.1.1.1", "yessign 범용 개인"},
      {"1.2.410.200005.1.1.5", "yessign 범용 법인"},
      {"1.2.410.200005.1.1.4", "yessign 은행·신용카드·보험 개인"},
      {"1.2.410.200005.1.1.6.8", "yessign 전자세금용"},
      {"1.2.410.200004.5.2.1.1", "SignGate 범용 법인"},
      {"1.2.410.200004.5.2.1.5001", "SignGate 국세청용"},
      {"1.2.410.200004.5.4.1.1", "CrossCert 범용 개인"},
      {"1.2.410.200004.5.4.1.74", "CrossCert 국세청용"},
      {"1.2.410.200012.1.1.1", "TradeSign 범용 개인"},
      {"1.2.410.200012.1.1.3", "TradeSign 범용 법인"},
      {"1.2.410.200012.1.1.105", "TradeSign 신용카드"},
  };
  for (const auto& [oid, label] : expected) {
    CertSpec spec;
    spec.policies = oid;
    const auto summary = dojang::pki::summarizeCertificate(makeCertificate(spec), fixedNow());
    INFO(oid);
    CHECK(summary.policyOid == oid);
    REQUIRE(summary.koreanPolicy.has_value());
    CHECK(dojang::pki::koreanLabel(*summary.koreanPolicy) == label);
  }
}

TEST_CASE("disputed SignKorea OIDs say that sources disagree", "[pki]") {
  for (const char* oid : {"1.2.410.200004.5.1.1.10", "1.2.410.200004.5.1.1.11", "1.2.410.200004.5.1.1.12"}) {
    const auto policy = dojang::pki::findKoreanPolicy(oid);
    INFO(oid);
    REQUIRE(policy);
    CHECK(policy->disputed);
    CHECK(dojang::pki::koreanLabel(*policy).find("출처마다") != std::string::npos);
    CHECK(dojang::pki::englishLabel(*policy).find("sources disagree") != std::string::npos);
  }
  const auto tax = dojang::pki::findKoreanPolicy("1.2.410.200004.5.1.1.11");
  REQUIRE(tax);
  CHECK(std::string(tax->typeKo).find("국세청용") != std::string::npos);
  CHECK(std::string(tax->typeKo).find("Silver") != std::string::npos);
}

TEST_CASE("unknown or missing policies are reported but not recognised", "[pki]") {
  CertSpec unknown;
  unknown.policies = "1.2.3.4.5";
  const auto unknownSummary = dojang::pki::summarizeCertificate(makeCertificate(unknown), fixedNow());
  CHECK(unknownSummary.policyOid == "1.2.3.4.5");
  CHECK_FALSE(unknownSummary.koreanPolicy.has_value());

  // A prefix of a known OID is not that OID.
  CHECK_FALSE(dojang::pki::findKoreanPolicy("1.2.410.200004.5.1.1").has_value());
  CHECK_FALSE(dojang::pki::findKoreanPolicy("1.2.410.200004.5.1.1.55").has_value());

  CertSpec none;
  const auto noneSummary = dojang::pki::summarizeCertificate(makeCertificate(none), fixedNow());
  CHECK(noneSummary.policyOid.empty());
  CHECK_FALSE(noneSummary.koreanPolicy.has_value());
}

TEST_CASE("RSA keys are named with their size", "[pki]") {
  CertSpec spec;
  spec.key = rsaKey().get();
  spec.serial = 7;
  const auto summary = dojang::pki::summarizeCertificate(makeCertificate(spec), fixedNow());
  CHECK(summary.keyAlgorithm == "RSA-2048");
  CHECK(summary.serialHex == "07");
}

TEST_CASE("the policy table is consistent", "[pki]") {
  std::set<std::string_view> seen;
  const std::set<std::string_view> arcs{"1.2.410.200004.5.1.1.", "1.2.410.200005.1.1.",
                                        "1.2.410.200004.5.2.1.", "1.2.410.200004.5.4.1.",
                                        "1.2.410.200012.1.1."};
  const std::set<std::string_view> brands{"SignKorea", "yessign", "SignGate", "CrossCert", "TradeSign"};
  for (const auto& policy : dojang::pki::koreanPolicies()) {
    INFO(policy.oid);
    CHECK(seen.insert(policy.oid).second);
    CHECK(brands.contains(policy.brand));
    bool inArc = false;
    for (const auto arc : arcs) {
      inArc = inArc || policy.oid.starts_with(arc);
    }
    CHECK(inArc);
    CHECK_FALSE(policy.typeKo.empty());
    CHECK_FALSE(policy.typeEn.empty());
  }
  CHECK(seen.size() >= 30);
}

TEST_CASE("bytes that are not a certificate are rejected as bad input", "[pki]") {
  const std::vector<std::uint8_t> garbage{0x30, 0x03, 0x02, 0x01, 0x05};
  try {
    (void)dojang::pki::summarizeCertificate(garbage, fixedNow());
    FAIL("no exception");
  } catch (const dojang::Error& error) {
    CHECK(error.kind() == dojang::ErrorKind::BadInput);
  }
  CHECK_THROWS_AS(dojang::pki::summarizeCertificate({}, fixedNow()), dojang::Error);
}

TEST_CASE("trailing padding after the certificate is ignored by the fingerprint", "[pki]") {
  CertSpec spec;
  auto der = makeCertificate(spec);
  const std::string expected = sha256Colons(der);
  der.push_back(0);
  der.push_back(0);
  CHECK(dojang::pki::summarizeCertificate(der, fixedNow()).sha256Fingerprint == expected);
}

TEST_CASE("ISO 8601 formatting is UTC with a Z", "[pki]") {
  CHECK(dojang::pki::formatIso8601Utc(fixedNow()) == "2025-03-01T09:00:00Z");
  CHECK(dojang::pki::formatIso8601Utc(Clock::from_time_t(0)) == "1970-01-01T00:00:00Z");
}
