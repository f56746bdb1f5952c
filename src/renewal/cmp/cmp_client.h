// The renewal engine's CMP client (RFC 9810 over HTTP, OpenSSL's OSSL_CMP_CTX): kur and p10cr
// protected by the current token key, ir protected by a reference number and authorization code.
// It is handed EVP_PKEYs (token-backed ones from TokenKeys) and never sees key material.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "drivers/token/secure_bytes.h"
#include "src/common/errors/error.h"
#include "src/common/ossl/owners.h"

namespace dojang::renewal::cmp {

struct Endpoint {
  std::string host;
  int port = 0;
  std::string path = "/";
  std::string trustedCertificatesFile;  // PEM: the CA certificates that sign responses
  std::chrono::seconds messageTimeout{30};
  std::chrono::seconds totalTimeout{120};
};

struct Issued {
  X509Ptr certificate;
  std::vector<X509Ptr> caCertificates;  // the response's caPubs (often only ir answers carry them)
};

// Called with the new certificate before certConf goes out, so the engine can journal it. If it
// throws, the certificate is rejected (certConf with failInfo systemFailure; the CA revokes it)
// and the exception propagates out of the request unchanged.
using BeforeConfirm = std::function<void(X509& issued)>;

// The dojang-ca fee acknowledgement (docs/ca.md): a generalInfo InfoTypeAndValue, INTEGER KRW.
inline constexpr const char* kFeeAcknowledgementOid = "2.25.291284094336645414261949578006134921605.1";

// The CA said no: Error(kind Refused) with what it said. The message names the endpoint, the
// PKIStatus, the failInfo bits and the CA's text.
class CaRejection final : public Error {
 public:
  CaRejection(const std::string& message, int pkiStatus, std::vector<std::string> failInfo,
              std::vector<std::string> statusText, CallSite where = CallSite::current());

  // OSSL_CMP_PKISTATUS_* (2 = rejection).
  [[nodiscard]] int pkiStatus() const noexcept { return m_pkiStatus; }
  // RFC 9810 PKIFailureInfo bit names ("badRequest", "notAuthorized", ...).
  [[nodiscard]] const std::vector<std::string>& failInfo() const noexcept { return m_failInfo; }
  // The statusString entries (dojang-ca puts its message for people there).
  [[nodiscard]] const std::vector<std::string>& statusText() const noexcept { return m_statusText; }

 private:
  int m_pkiStatus;
  std::vector<std::string> m_failInfo;
  std::vector<std::string> m_statusText;
};

// Key update (kur): oldKey + oldCertificate protect the request and certConf, newKey signs the
// proof of possession. feeKrw, when given, travels as the fee acknowledgement. Errors: CaRejection
// (Refused); Error Retryable when the CA is unreachable or too slow (the message names host:port)
// or answers HTTP 5xx; Error Fatal for other HTTP errors, garbage and failed checks.
Issued keyUpdate(const Endpoint& endpoint, EVP_PKEY& oldKey, X509& oldCertificate, EVP_PKEY& newKey,
                 std::optional<long> feeKrw, const BeforeConfirm& beforeConfirm);

// The same as a PKCS#10 request (p10cr) for CA profiles that want a CSR: the CSR carries the old
// certificate's subject and is signed by newKey; the message is protected by the old pair.
Issued p10crUpdate(const Endpoint& endpoint, EVP_PKEY& oldKey, X509& oldCertificate, EVP_PKEY& newKey,
                   std::optional<long> feeKrw, const BeforeConfirm& beforeConfirm);

// Initial registration (ir) with a password-based MAC: senderKID = reference number (참조번호),
// secret = authorization code (인가코드). The request's subject is "/CN=applicant"; the CA
// issues for the subject it registered with the reference. Errors as for keyUpdate.
Issued enrol(const Endpoint& endpoint, const std::string& reference, const SecureBytes& secret,
             EVP_PKEY& newKey, std::optional<long> feeKrw, const BeforeConfirm& beforeConfirm);

}  // namespace dojang::renewal::cmp
