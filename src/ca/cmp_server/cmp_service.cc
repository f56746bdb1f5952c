#include "src/ca/cmp_server/cmp_service.h"

#include <openssl/cmp_util.h>
#include <openssl/err.h>

#include <ctime>
#include <iostream>

#include "src/ca/cmp_server/cmp_transaction.h"
#include "src/ca/cmp_server/message_view.h"
#include "src/ca/cmp_server/rejections.h"
#include "src/ca/issuer/subject_name.h"
#include "src/common/errors/foreign_errors.h"

namespace dojang::ca {

void logLine(const std::string& line) { std::cerr << ("dojang-ca: " + line + "\n") << std::flush; }

std::string bodyName(int bodyType) {
  switch (bodyType) {
    case body::kIr: return "ir";
    case body::kCr: return "cr";
    case body::kP10cr: return "p10cr";
    case body::kKur: return "kur";
    case body::kRr: return "rr";
    case body::kGenm: return "genm";
    case body::kCertConf: return "certConf";
    case body::kError: return "error";
    case body::kPollReq: return "pollReq";
    default: return "body " + std::to_string(bodyType);
  }
}

namespace {

constexpr int64_t kTransactionIdleSeconds = 600;
constexpr size_t kMaxOpenTransactions = 256;

int logFromOpenssl(const char* /*func*/, const char* /*file*/, int /*line*/, OSSL_CMP_severity level,
                   const char* message) {
  if (level <= OSSL_CMP_LOG_WARNING) {
    logLine(std::string("openssl cmp: ") + message);
  }
  return 1;
}

std::string octetsHex(const ASN1_OCTET_STRING* octets) {
  if (octets == nullptr) {
    return {};
  }
  return toHex(ASN1_STRING_get0_data(octets), static_cast<size_t>(ASN1_STRING_length(octets)));
}

// MAC check of a request against one candidate secret, without touching the server context.
bool macMatches(const OSSL_CMP_MSG& request, const std::string& secret) {
  CmpCtxPtr probe(checkOpenssl(OSSL_CMP_CTX_new(nullptr, nullptr), "OSSL_CMP_CTX_new"));
  checkOpensslStatus(OSSL_CMP_CTX_set_log_cb(probe.get(), logFromOpenssl), "OSSL_CMP_CTX_set_log_cb");
  OSSL_CMP_CTX_set_log_verbosity(probe.get(), OSSL_CMP_LOG_EMERG);
  checkOpensslStatus(OSSL_CMP_CTX_set1_secretValue(probe.get(), reinterpret_cast<const unsigned char*>(secret.data()),
                                                   static_cast<int>(secret.size())),
                     "OSSL_CMP_CTX_set1_secretValue");
  ERR_set_mark();
  const bool valid = OSSL_CMP_validate_msg(probe.get(), &request) == 1;
  ERR_pop_to_mark();
  return valid;
}

CmpTransaction& transactionOf(OSSL_CMP_SRV_CTX* server) {
  return *static_cast<CmpTransaction*>(OSSL_CMP_SRV_CTX_get0_custom_ctx(server));
}

OSSL_CMP_PKISI* onCertRequest(OSSL_CMP_SRV_CTX* server, const OSSL_CMP_MSG* request, int /*certReqId*/,
                              const OSSL_CRMF_MSG* certRequest, const X509_REQ* csr, X509** certOut,
                              STACK_OF(X509)** chainOut, STACK_OF(X509)** caPubs) {
  CmpTransaction& transaction = transactionOf(server);
  try {
    return transaction.service->decideCertRequest(transaction, *request, certRequest, csr, certOut, chainOut,
                                                  caPubs);
  } catch (const std::exception& error) {
    logLine(std::string("certificate request failed: ") + error.what());
    transaction.finished = true;
    return statusOf({OSSL_CMP_PKIFAILUREINFO_systemFailure, "the CA failed to process the request"});
  }
}

OSSL_CMP_PKISI* onRevocation(OSSL_CMP_SRV_CTX* server, const OSSL_CMP_MSG* request, const X509_NAME* issuer,
                             const ASN1_INTEGER* serial) {
  CmpTransaction& transaction = transactionOf(server);
  try {
    return transaction.service->decideRevocation(transaction, *request, issuer, serial);
  } catch (const std::exception& error) {
    logLine(std::string("revocation request failed: ") + error.what());
    return statusOf({OSSL_CMP_PKIFAILUREINFO_systemFailure, "the CA failed to process the request"});
  }
}

void onError(OSSL_CMP_SRV_CTX* server, const OSSL_CMP_MSG* /*request*/, const OSSL_CMP_PKISI* statusInfo,
             const ASN1_INTEGER* /*errorCode*/, const OSSL_CMP_PKIFREETEXT* /*details*/) {
  char text[OSSL_CMP_PKISI_BUFLEN];
  const char* printed = statusInfo != nullptr ? OSSL_CMP_snprint_PKIStatusInfo(statusInfo, text, sizeof text) : nullptr;
  logLine(std::string("client reported an error: ") + (printed != nullptr ? printed : "(no status)"));
  transactionOf(server).finished = true;
}

int onCertConf(OSSL_CMP_SRV_CTX* server, const OSSL_CMP_MSG* /*request*/, int /*certReqId*/,
               const ASN1_OCTET_STRING* certHash, const OSSL_CMP_PKISI* status) {
  CmpTransaction& transaction = transactionOf(server);
  try {
    transaction.service->confirmCertificate(transaction, certHash, status);
    return 1;
  } catch (const std::exception& error) {
    logLine(std::string("certConf failed: ") + error.what());
    return 0;
  }
}

}  // namespace

X509StackPtr CmpService::caCertificateStack() const {
  X509StackPtr stack(checkOpenssl(sk_X509_new_null(), "sk_X509_new_null"));
  checkOpensslStatus(X509_add_cert(stack.get(), m_authority.caCertificate(), X509_ADD_FLAG_UP_REF), "X509_add_cert");
  return stack;
}

X509StorePtr CmpService::trustedStore() const {
  // Trust for signed requests (kur, p10cr renewal, rr): only this CA. Time is not checked here:
  // the signature still proves possession of the old key, and the policy then rejects expired
  // certificates with a message that tells the holder to ask for a reissue.
  X509StorePtr store(checkOpenssl(X509_STORE_new(), "X509_STORE_new"));
  checkOpensslStatus(X509_STORE_add_cert(store.get(), m_authority.caCertificate()), "X509_STORE_add_cert");
  checkOpensslStatus(X509_STORE_set_flags(store.get(), X509_V_FLAG_NO_CHECK_TIME), "X509_STORE_set_flags");
  return store;
}

CmpService::CmpService(const CertificateAuthority& authority, CaStore& store, ProfileCatalog profiles,
                       ServicePolicy policy)
    : m_authority(authority), m_store(store), m_profiles(std::move(profiles)), m_policy(std::move(policy)) {}

CmpService::~CmpService() = default;

std::shared_ptr<CmpTransaction> CmpService::startTransaction(const OSSL_CMP_MSG& request, int64_t now) {
  auto transaction = std::make_shared<CmpTransaction>();
  transaction->service = this;
  transaction->lastActivity = now;
  transaction->server.reset(checkOpenssl(OSSL_CMP_SRV_CTX_new(nullptr, nullptr), "OSSL_CMP_SRV_CTX_new"));
  OSSL_CMP_SRV_CTX* server = transaction->server.get();
  OSSL_CMP_CTX* context = checkOpenssl(OSSL_CMP_SRV_CTX_get0_cmp_ctx(server), "OSSL_CMP_SRV_CTX_get0_cmp_ctx");
  checkOpensslStatus(OSSL_CMP_SRV_CTX_init(server, transaction.get(), onCertRequest, onRevocation, nullptr, onError,
                                           onCertConf, nullptr),
                     "OSSL_CMP_SRV_CTX_init");
  checkOpensslStatus(OSSL_CMP_CTX_set_log_cb(context, logFromOpenssl), "OSSL_CMP_CTX_set_log_cb");
  checkOpensslStatus(OSSL_CMP_CTX_set1_cert(context, m_authority.cmpCertificate()), "OSSL_CMP_CTX_set1_cert");
  checkOpensslStatus(OSSL_CMP_CTX_set1_pkey(context, m_authority.cmpKey()), "OSSL_CMP_CTX_set1_pkey");
  // The CA certificate travels in extraCerts so clients can build the chain of our CMP cert.
  X509StackPtr untrusted = caCertificateStack();
  checkOpensslStatus(OSSL_CMP_CTX_set1_untrusted(context, untrusted.get()), "OSSL_CMP_CTX_set1_untrusted");
  X509StorePtr trusted = trustedStore();
  checkOpensslStatus(OSSL_CMP_CTX_set0_trustedStore(context, trusted.get()), "OSSL_CMP_CTX_set0_trustedStore");
  static_cast<void>(trusted.release());  // the context owns it now
  checkOpensslStatus(OSSL_CMP_SRV_CTX_set_grant_implicit_confirm(server, 1), "set_grant_implicit_confirm");

  const int bodyType = OSSL_CMP_MSG_get_bodytype(&request);
  const RequestHeader header = readRequestHeader(request);
  auto decide = [&](int failInfoBit, std::string text) {
    transaction->decidedRejection = Rejection{failInfoBit, std::move(text)};
    // Let the request reach our callback, which answers with this rejection and nothing else; the
    // response is signed with the CMP server key, which the client can check against the CA.
    checkOpensslStatus(OSSL_CMP_SRV_CTX_set_accept_unprotected(server, 1), "set_accept_unprotected");
  };

  const bool issuanceBody = bodyType == body::kIr || bodyType == body::kP10cr;
  if (issuanceBody && header.macProtected) {
    const std::string reference = header.senderKid.value_or("");
    std::optional<EnrolmentCode> code;
    {
      std::lock_guard<std::mutex> state(m_stateMutex);
      code = m_store.findCode(reference);
    }
    if (!code || !macMatches(request, code->secret)) {
      decide(OSSL_CMP_PKIFAILUREINFO_badMessageCheck,
             "authentication failed: reference number '" + reference +
                 "' is unknown or the authorization code is wrong");
    } else if (code->usedAt) {
      const Rejection used = usedCodeRejection(reference, *code->usedAt);
      decide(used.failInfoBit, used.text);
    } else if (now >= code->expiresAt) {
      decide(OSSL_CMP_PKIFAILUREINFO_notAuthorized,
             "reference number " + reference + " expired on " + formatTime(code->expiresAt) +
                 "; ask the CA for a new one");
    } else {
      checkOpensslStatus(OSSL_CMP_CTX_set1_secretValue(context, reinterpret_cast<const unsigned char*>(code->secret.data()),
                                                       static_cast<int>(code->secret.size())),
                         "OSSL_CMP_CTX_set1_secretValue");
      checkOpensslStatus(OSSL_CMP_CTX_set1_referenceValue(context, reinterpret_cast<const unsigned char*>(reference.data()),
                                                          static_cast<int>(reference.size())),
                         "OSSL_CMP_CTX_set1_referenceValue");
      transaction->code = std::move(code);
    }
  } else if (bodyType == body::kIr && header.signatureProtected) {
    decide(OSSL_CMP_PKIFAILUREINFO_notAuthorized,
           "ir must be protected with a reference number and authorization code (password-based MAC); "
           "to renew, use kur signed with the current certificate");
  } else if ((bodyType == body::kKur || bodyType == body::kRr) && header.macProtected) {
    decide(OSSL_CMP_PKIFAILUREINFO_wrongIntegrity,
           bodyName(bodyType) + " must be signed with the current certificate's key, not protected by a MAC");
  } else if (bodyType == body::kCr) {
    decide(OSSL_CMP_PKIFAILUREINFO_badRequest,
           "cr is not offered: use ir with a reference code for a new certificate, or kur to renew");
  }
  return transaction;
}

void CmpService::pruneTransactions(int64_t now) {
  for (auto it = m_transactions.begin(); it != m_transactions.end();) {
    if (it->second->finished || now - it->second->lastActivity > kTransactionIdleSeconds) {
      it = m_transactions.erase(it);
    } else {
      ++it;
    }
  }
  while (m_transactions.size() > kMaxOpenTransactions) {
    auto oldest = m_transactions.begin();
    for (auto it = m_transactions.begin(); it != m_transactions.end(); ++it) {
      if (it->second->lastActivity < oldest->second->lastActivity) {
        oldest = it;
      }
    }
    m_transactions.erase(oldest);
  }
}

std::vector<unsigned char> CmpService::handle(const std::vector<unsigned char>& requestDer) {
  const unsigned char* cursor = requestDer.data();
  CmpMsgPtr request(d2i_OSSL_CMP_MSG(nullptr, &cursor, static_cast<long>(requestDer.size())));
  if (!request || cursor != requestDer.data() + requestDer.size()) {
    ERR_clear_error();
    throw Error(CKR_ARGUMENTS_BAD, ErrorKind::BadInput,
                request ? "trailing bytes after the CMP message" : "the body is not a DER-encoded CMP message");
  }

  const int64_t now = std::time(nullptr);
  const int bodyType = OSSL_CMP_MSG_get_bodytype(request.get());
  const OSSL_CMP_PKIHEADER* header = OSSL_CMP_MSG_get0_header(request.get());
  const std::string transactionId = octetsHex(OSSL_CMP_HDR_get0_transactionID(header));
  const bool continuation = bodyType == body::kCertConf || bodyType == body::kPollReq ||
                            bodyType == body::kError;

  std::shared_ptr<CmpTransaction> transaction;
  if (continuation) {
    std::lock_guard<std::mutex> lock(m_transactionsMutex);
    auto found = m_transactions.find(transactionId);
    if (found != m_transactions.end()) {
      transaction = found->second;
    }
  }
  if (!transaction) {
    transaction = startTransaction(*request, now);
    if (!transactionId.empty()) {  // messages without a transactionID are not kept
      std::lock_guard<std::mutex> lock(m_transactionsMutex);
      m_transactions[transactionId] = transaction;
    }
  }

  CmpMsgPtr response;
  {
    std::lock_guard<std::mutex> serving(transaction->serving);
    transaction->lastActivity = now;
    response.reset(OSSL_CMP_SRV_process_request(transaction->server.get(), request.get()));
    ERR_clear_error();
    const int responseType = response ? OSSL_CMP_MSG_get_bodytype(response.get()) : body::kError;
    if (responseType == body::kError || responseType == body::kRp || responseType == body::kPkiConf ||
        responseType == body::kGenp || transaction->decidedRejection) {
      transaction->finished = true;
    }
  }
  {
    std::lock_guard<std::mutex> lock(m_transactionsMutex);
    pruneTransactions(now);
  }
  if (!response) {
    throw Error(CKR_FUNCTION_FAILED, ErrorKind::Fatal, "OpenSSL produced no CMP response for " + bodyName(bodyType));
  }

  unsigned char* der = nullptr;
  int length = i2d_OSSL_CMP_MSG(response.get(), &der);
  if (length <= 0) {
    throwOpenssl("encoding the CMP response");
  }
  OpensslStringPtr owner(reinterpret_cast<char*>(der));
  return std::vector<unsigned char>(der, der + length);
}

std::vector<unsigned char> CmpService::crlDer() {
  std::vector<RevokedEntry> revoked;
  int64_t crlNumber = 0;
  {
    // One snapshot: a higher CRL number never lists fewer revocations.
    std::lock_guard<std::mutex> state(m_stateMutex);
    revoked = m_store.revoked();
    crlNumber = m_store.nextCrlNumber();
  }
  X509CrlPtr crl = m_authority.makeCrl(revoked, crlNumber, std::time(nullptr));
  unsigned char* der = nullptr;
  int length = i2d_X509_CRL(crl.get(), &der);
  if (length <= 0) {
    throwOpenssl("encoding the CRL");
  }
  OpensslStringPtr owner(reinterpret_cast<char*>(der));
  return std::vector<unsigned char>(der, der + length);
}

}  // namespace dojang::ca
