// The CMP side of dojang-ca: OpenSSL's generic CMP server (OSSL_CMP_SRV_CTX) does the protocol,
// protection checks and encoding; this class supplies the Korean CA policy through its callbacks:
// reference-code issuance (ir, p10cr), renewal in the window (kur, p10cr), reissue, revocation
// (rr) and fee acknowledgement. One OSSL_CMP_SRV_CTX per CMP transaction, so each carries its own
// MAC secret or trust configuration, and concurrent clients do not mix their transactions.
// Requests run in parallel: decoding, MAC and signature checks, certificate and response signing
// need no lock; only the store (one SQLite connection) is used under m_stateMutex, and a policy
// decision is re-checked there before its writes, so concurrent requests cannot both use one
// reference code or renew one certificate twice.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "src/ca/issuer/authority.h"
#include "src/ca/profiles/profile.h"
#include "src/ca/store/ca_store.h"

namespace dojang::ca {

// generalInfo OID a client sends to acknowledge a fee: dojang's UUID arc (X.667, 2.25.<uuid>)
// plus ".1". Value: INTEGER, the fee in KRW. `openssl cmp -geninfo <OID>:int:4400`.
inline constexpr const char* kFeeAcknowledgementOid = "2.25.291284094336645414261949578006134921605.1";

struct ServicePolicy final {
  int renewalWindowDays = 30;
  std::string crlUrl;  // written into every certificate's CRL distribution point
  // Test and demo knobs: shorter validity and backdated notBefore, to reach the renewal window
  // and expiry without waiting.
  std::optional<int> testValidityDays;
  int testNotBeforeOffsetDays = 0;
};

struct CmpTransaction;

class CmpService final {
 public:
  CmpService(const CertificateAuthority& authority, CaStore& store, ProfileCatalog profiles,
             ServicePolicy policy);
  ~CmpService();
  CmpService(const CmpService&) = delete;
  CmpService& operator=(const CmpService&) = delete;

  // One HTTP request body in, one CMP response out. Throws dojang::Error(BadInput) when the bytes
  // are not a CMP message (the transport answers HTTP 400); any CMP-level rejection is a response.
  [[nodiscard]] std::vector<unsigned char> handle(const std::vector<unsigned char>& requestDer);

  // Set once the HTTP port is bound, before serving.
  void setCrlUrl(std::string url) { m_policy.crlUrl = std::move(url); }

  // A freshly signed CRL, DER.
  [[nodiscard]] std::vector<unsigned char> crlDer();

  // Used by the OpenSSL callbacks (C functions cannot be members).
  [[nodiscard]] OSSL_CMP_PKISI* decideCertRequest(CmpTransaction& transaction, const OSSL_CMP_MSG& request,
                                                  const OSSL_CRMF_MSG* certRequest, const X509_REQ* csr,
                                                  X509** certOut, STACK_OF(X509)** chainOut,
                                                  STACK_OF(X509)** caPubs);
  [[nodiscard]] OSSL_CMP_PKISI* decideRevocation(CmpTransaction& transaction, const OSSL_CMP_MSG& request,
                                                 const X509_NAME* issuer, const ASN1_INTEGER* serial);
  void confirmCertificate(CmpTransaction& transaction, const ASN1_OCTET_STRING* certHash,
                          const OSSL_CMP_PKISI* status);

 private:
  std::shared_ptr<CmpTransaction> startTransaction(const OSSL_CMP_MSG& request, int64_t now);
  // Callers hold m_transactionsMutex.
  void pruneTransactions(int64_t now);
  // A new stack holding a reference to the CA certificate.
  [[nodiscard]] X509StackPtr caCertificateStack() const;
  // Trust for signed requests, one store per transaction so no X509_STORE is shared by threads.
  [[nodiscard]] X509StorePtr trustedStore() const;

  const CertificateAuthority& m_authority;
  CaStore& m_store;
  ProfileCatalog m_profiles;
  ServicePolicy m_policy;
  std::mutex m_stateMutex;  // every use of m_store: reads see committed state, writes stay serial
  std::mutex m_transactionsMutex;  // m_transactions only; never held while taking another lock
  // By transactionID hex; shared so that pruning never frees a transaction a request is serving.
  std::map<std::string, std::shared_ptr<CmpTransaction>> m_transactions;
};

}  // namespace dojang::ca
