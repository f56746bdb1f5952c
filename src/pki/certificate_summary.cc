#include "src/pki/certificate_summary.h"

#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <array>
#include <ctime>
#include <memory>

#include "src/common/errors/foreign_errors.h"
#include "src/common/ossl/owners.h"

namespace dojang::pki {

namespace {

// RFC 2253 order and escaping, but UTF-8 left as UTF-8 instead of \XX escapes.
std::string nameOneLine(const X509_NAME* name) {
  BioPtr bio(checkOpenssl(BIO_new(BIO_s_mem()), "BIO_new"));
  constexpr unsigned long kFlags = XN_FLAG_RFC2253 & ~static_cast<unsigned long>(ASN1_STRFLGS_ESC_MSB);
  if (X509_NAME_print_ex(bio.get(), name, 0, kFlags) < 0) {
    throwOpenssl("X509_NAME_print_ex", ErrorKind::BadInput);
  }
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio.get(), &data);
  return size > 0 ? std::string(data, static_cast<std::size_t>(size)) : std::string();
}

std::string commonNameOf(const X509_NAME* name) {
  const int index = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
  if (index < 0) {
    return {};
  }
  const ASN1_STRING* value = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, index));
  unsigned char* utf8 = nullptr;
  const int size = ASN1_STRING_to_UTF8(&utf8, value);
  if (size < 0) {
    ERR_clear_error();
    return {};
  }
  OpensslBytesPtr owner(utf8);
  return std::string(reinterpret_cast<const char*>(utf8), static_cast<std::size_t>(size));
}

std::string serialHexOf(const X509* cert) {
  BignumPtr number(checkOpenssl(ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr),
                                "ASN1_INTEGER_to_BN"));
  OpensslStringPtr hex(checkOpenssl(BN_bn2hex(number.get()), "BN_bn2hex"));
  return hex.get();
}

std::string objectText(const ASN1_OBJECT* object) {
  std::array<char, 128> buffer{};
  const int size = OBJ_obj2txt(buffer.data(), static_cast<int>(buffer.size()), object, 1);
  if (size <= 0) {
    return "?";
  }
  if (static_cast<std::size_t>(size) >= buffer.size()) {
    std::string large(static_cast<std::size_t>(size) + 1, '\0');
    OBJ_obj2txt(large.data(), size + 1, object, 1);
    large.resize(static_cast<std::size_t>(size));
    return large;
  }
  return std::string(buffer.data(), static_cast<std::size_t>(size));
}

std::string keyAlgorithmOf(X509* cert) {
  EVP_PKEY* key = X509_get0_pubkey(cert);  // owned by cert
  if (key == nullptr) {
    // A key algorithm OpenSSL cannot load: name it by its OID.
    ERR_clear_error();
    const ASN1_OBJECT* algorithm = nullptr;
    if (X509_PUBKEY_get0_param(const_cast<ASN1_OBJECT**>(&algorithm), nullptr, nullptr, nullptr,
                               X509_get_X509_PUBKEY(cert)) == 1 && algorithm != nullptr) {
      return "unknown (" + objectText(algorithm) + ")";
    }
    return "unknown";
  }
  const int bits = EVP_PKEY_get_bits(key);
  if (EVP_PKEY_is_a(key, "RSA") || EVP_PKEY_is_a(key, "RSA-PSS")) {
    return std::string(EVP_PKEY_is_a(key, "RSA") ? "RSA-" : "RSA-PSS-") + std::to_string(bits);
  }
  if (EVP_PKEY_is_a(key, "EC")) {
    std::array<char, 80> group{};
    std::size_t length = 0;
    if (EVP_PKEY_get_group_name(key, group.data(), group.size(), &length) != 1) {
      ERR_clear_error();
      return "EC-" + std::to_string(bits);
    }
    const std::string groupName(group.data(), length);
    const char* nist = EC_curve_nid2nist(OBJ_txt2nid(groupName.c_str()));
    return "EC " + std::string(nist != nullptr ? nist : groupName.c_str());
  }
  if (EVP_PKEY_is_a(key, "ED25519")) {
    return "Ed25519";
  }
  if (EVP_PKEY_is_a(key, "ED448")) {
    return "Ed448";
  }
  const char* name = EVP_PKEY_get0_type_name(key);
  return std::string(name != nullptr ? name : "unknown") + "-" + std::to_string(bits);
}

std::chrono::system_clock::time_point timeOf(const ASN1_TIME* time, std::string_view which) {
  std::tm parts{};
  if (time == nullptr || ASN1_TIME_to_tm(time, &parts) != 1) {
    throwOpenssl(std::string("certificate ") + std::string(which) + " is not a valid time",
                 ErrorKind::BadInput);
  }
  return std::chrono::system_clock::from_time_t(::timegm(&parts));
}

std::string firstPolicyOid(const X509* cert) {
  int critical = 0;
  CertificatePoliciesPtr policies(static_cast<CERTIFICATEPOLICIES*>(
      X509_get_ext_d2i(cert, NID_certificate_policies, &critical, nullptr)));
  if (!policies) {
    // critical == -1: absent; -2: repeated extension; otherwise it failed to decode.
    ERR_clear_error();
    return {};
  }
  if (sk_POLICYINFO_num(policies.get()) < 1) {
    return {};
  }
  return objectText(sk_POLICYINFO_value(policies.get(), 0)->policyid);
}

std::string fingerprintOf(std::span<const std::uint8_t> der) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int size = 0;
  checkOpensslStatus(EVP_Digest(der.data(), der.size(), digest.data(), &size, EVP_sha256(), nullptr),
                     "EVP_Digest(SHA-256)");
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string text;
  text.reserve(size * 3);
  for (unsigned int i = 0; i < size; ++i) {
    if (i != 0) {
      text += ':';
    }
    text += kHex[digest[i] >> 4];
    text += kHex[digest[i] & 0x0f];
  }
  return text;
}

}  // namespace

std::string_view renewalAdviceText(RenewalAdvice advice) noexcept {
  switch (advice) {
    case RenewalAdvice::Ok:
      return "ok";
    case RenewalAdvice::RenewNow:
      return "renew now";
    case RenewalAdvice::Expired:
      return "expired";
  }
  return "ok";
}

std::string formatIso8601Utc(std::chrono::system_clock::time_point time) {
  const std::time_t seconds = std::chrono::system_clock::to_time_t(time);
  std::tm parts{};
  ::gmtime_r(&seconds, &parts);
  std::array<char, 32> buffer{};
  const std::size_t size = std::strftime(buffer.data(), buffer.size(), "%Y-%m-%dT%H:%M:%SZ", &parts);
  return std::string(buffer.data(), size);
}

CertificateSummary summarizeCertificate(std::span<const std::uint8_t> der,
                                        std::chrono::system_clock::time_point now) {
  if (der.empty()) {
    fail(CKR_DATA_INVALID, "empty certificate value");
  }
  const unsigned char* cursor = der.data();
  X509Ptr cert(d2i_X509(nullptr, &cursor, static_cast<long>(der.size())));
  if (!cert) {
    throwOpenssl("not a DER X.509 certificate", ErrorKind::BadInput);
  }
  // Tokens occasionally pad CKA_VALUE; the fingerprint covers the certificate itself.
  const auto consumed = static_cast<std::size_t>(cursor - der.data());

  CertificateSummary summary;
  summary.subject = nameOneLine(X509_get_subject_name(cert.get()));
  summary.issuer = nameOneLine(X509_get_issuer_name(cert.get()));
  summary.commonName = commonNameOf(X509_get_subject_name(cert.get()));
  summary.serialHex = serialHexOf(cert.get());
  summary.keyAlgorithm = keyAlgorithmOf(cert.get());
  summary.notBeforeTime = timeOf(X509_get0_notBefore(cert.get()), "notBefore");
  summary.notAfterTime = timeOf(X509_get0_notAfter(cert.get()), "notAfter");
  summary.notBefore = formatIso8601Utc(summary.notBeforeTime);
  summary.notAfter = formatIso8601Utc(summary.notAfterTime);

  const auto left = summary.notAfterTime - now;
  summary.daysLeft = std::chrono::floor<std::chrono::days>(left).count();
  if (left <= decltype(left)::zero()) {
    summary.renewal = RenewalAdvice::Expired;
  } else if (left <= std::chrono::days(kRenewalWindowDays)) {
    summary.renewal = RenewalAdvice::RenewNow;
  } else {
    summary.renewal = RenewalAdvice::Ok;
  }

  summary.policyOid = firstPolicyOid(cert.get());
  if (!summary.policyOid.empty()) {
    summary.koreanPolicy = findKoreanPolicy(summary.policyOid);
  }
  summary.sha256Fingerprint = fingerprintOf(der.first(consumed));
  return summary;
}

}  // namespace dojang::pki
