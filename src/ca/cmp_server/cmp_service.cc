#include "src/ca/cmp_server/cmp_service.h"

#include <openssl/bn.h>
#include <openssl/cmp_util.h>
#include <openssl/err.h>

#include <atomic>
#include <ctime>
#include <iostream>

#include "src/ca/cmp_server/message_view.h"
#include "src/ca/cmp_server/rejections.h"
#include "src/ca/issuer/subject_name.h"
#include "src/common/errors/foreign_errors.h"

namespace dojang::ca {

namespace {

constexpr int64_t kSecondsPerDay = 86400;
constexpr int64_t kTransactionIdleSeconds = 600;
constexpr size_t kMaxOpenTransactions = 256;
constexpr int64_t kReasonUnspecified = 0;
constexpr int64_t kReasonSuperseded = 4;
constexpr int64_t kReasonCessationOfOperation = 5;

// One write per line, so lines of concurrent requests do not interleave.
void logLine(const std::string& line) { std::cerr << ("dojang-ca: " + line + "\n") << std::flush; }

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

X509NamePtr nameFromDer(const std::vector<unsigned char>& der) {
  const unsigned char* cursor = der.data();
  return X509NamePtr(checkOpenssl(d2i_X509_NAME(nullptr, &cursor, static_cast<long>(der.size())),
                                  "decoding a stored subject"));
}

std::string serialFromInteger(const ASN1_INTEGER* serial) {
  BignumPtr number(checkOpenssl(ASN1_INTEGER_to_BN(serial, nullptr), "ASN1_INTEGER_to_BN"));
  OpensslStringPtr hex(checkOpenssl(BN_bn2hex(number.get()), "BN_bn2hex"));
  return std::string(hex.get());
}

std::string validityText(int64_t notBefore, int64_t notAfter) {
  return "valid from " + formatTime(notBefore) + " to " + formatTime(notAfter);
}

}  // namespace

// State of one CMP transaction, from its first request to its certConf (or rejection).
struct CmpTransaction final {
  CmpService* service = nullptr;
  std::mutex serving;  // an OSSL_CMP_SRV_CTX is not thread-safe: one message of it at a time
  CmpSrvCtxPtr server;
  std::optional<EnrolmentCode> code;        // MAC-authenticated issuance with this code
  std::optional<Rejection> decidedRejection; // reached before OpenSSL could run our callbacks
  X509Ptr issued;                           // waiting for certConf
  // Also read by pruneTransactions, under the map's lock rather than `serving`.
  std::atomic<int64_t> lastActivity{0};
  std::atomic<bool> finished{false};
};

namespace {

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

OSSL_CMP_PKISI* CmpService::decideCertRequest(CmpTransaction& transaction, const OSSL_CMP_MSG& request,
                                              const OSSL_CRMF_MSG* certRequest, const X509_REQ* csr,
                                              X509** certOut, STACK_OF(X509)** chainOut, STACK_OF(X509)** caPubs) {
  const int bodyType = OSSL_CMP_MSG_get_bodytype(&request);
  auto reject = [&](const Rejection& rejection) {
    logLine(bodyName(bodyType) + " rejected: " + rejection.text);
    transaction.finished = true;
    return statusOf(rejection);
  };
  if (transaction.decidedRejection) {
    return reject(*transaction.decidedRejection);
  }

  const int64_t now = std::time(nullptr);
  const RequestHeader header = readRequestHeader(request);
  PkeyPtr publicKey;
  if (csr != nullptr) {
    // X509_REQ_get0_pubkey is not const-correct in OpenSSL 3.0.
    EVP_PKEY* key = X509_REQ_get0_pubkey(const_cast<X509_REQ*>(csr));
    if (key != nullptr && EVP_PKEY_up_ref(key) == 1) {
      publicKey.reset(key);
    }
  } else if (certRequest != nullptr) {
    publicKey = requestedPublicKey(*certRequest);
  }
  if (!publicKey) {
    return reject({OSSL_CMP_PKIFAILUREINFO_badCertTemplate, "the request carries no public key"});
  }
  const int64_t notBefore = now - m_policy.testNotBeforeOffsetDays * kSecondsPerDay;
  auto notAfterFor = [&](const Profile& profile) {
    return notBefore + int64_t{m_policy.testValidityDays.value_or(profile.validityDays)} * kSecondsPerDay;
  };

  const Profile* profile = nullptr;
  X509NamePtr subject;
  int64_t notAfter = 0;
  std::string origin;
  std::optional<CertificateRecord> previous;  // renewed or reissued certificate
  bool charge = false;

  // The decision reads the store; the lock is let go while the certificate is signed.
  std::unique_lock<std::mutex> state(m_stateMutex);
  if (transaction.code) {
    // Issuance or reissue with a reference code (ir, or p10cr protected by MAC).
    const EnrolmentCode& code = *transaction.code;
    profile = m_profiles.find(code.profile);
    if (profile == nullptr) {
      return reject({OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                     "profile " + code.profile + " of reference number " + code.reference + " is no longer offered"});
    }
    subject = nameFromDer(code.subjectDer);
    if (code.reissueOf) {
      previous = m_store.findBySerial(*code.reissueOf);
      if (!previous) {
        return reject({OSSL_CMP_PKIFAILUREINFO_badCertId, "the certificate to reissue is unknown"});
      }
      if (now >= previous->notAfter) {
        return reject({OSSL_CMP_PKIFAILUREINFO_notAuthorized,
                       "certificate " + previous->serial + " expired on " + formatTime(previous->notAfter) +
                           "; a reissue keeps the old expiry, so a new issuance is needed instead"});
      }
      notAfter = previous->notAfter;  // reissue keeps the original expiry, and is free
      origin = "reissue";
    } else {
      if (auto feeProblem = checkFee(header, *profile)) {
        return reject(*feeProblem);
      }
      notAfter = notAfterFor(*profile);
      origin = "issue";
      charge = profile->isPaid();
    }
  } else {
    // Renewal: OpenSSL has verified the signature and that the signer chains to this CA.
    if (!header.senderKid) {
      return reject({OSSL_CMP_PKIFAILUREINFO_badRequest,
                     "signed requests must name the signing certificate's key identifier (senderKID)"});
    }
    const std::string signerKeyId = toHex(reinterpret_cast<const unsigned char*>(header.senderKid->data()),
                                          header.senderKid->size());
    previous = m_store.findBySubjectKeyId(signerKeyId);
    if (!previous) {
      return reject({OSSL_CMP_PKIFAILUREINFO_signerNotTrusted,
                     "the signing certificate was not issued by this CA; use ir with a reference code"});
    }
    if (certRequest != nullptr) {
      if (const OSSL_CRMF_CERTID* oldId = OSSL_CRMF_MSG_get0_regCtrl_oldCertID(certRequest)) {
        const std::string oldSerial = serialFromInteger(OSSL_CRMF_CERTID_get0_serialNumber(oldId));
        if (oldSerial != previous->serial) {
          return reject({OSSL_CMP_PKIFAILUREINFO_badCertId,
                         "kur must be signed with the certificate it renews (oldCertID " + oldSerial +
                             ", signer " + previous->serial + ")"});
        }
      }
    }
    if (previous->revokedAt) {
      return reject(*renewalBlocked(m_store, *previous));  // reports the revocation
    }
    if (now >= previous->notAfter) {
      return reject({OSSL_CMP_PKIFAILUREINFO_notAuthorized,
                     "certificate " + previous->serial + " expired on " + formatTime(previous->notAfter) +
                         "; renewal is only possible until expiry: a reissue (new issuance with a reference "
                         "code) is needed"});
    }
    const int64_t windowOpens = previous->notAfter - int64_t{m_policy.renewalWindowDays} * kSecondsPerDay;
    if (now < windowOpens) {
      return reject({OSSL_CMP_PKIFAILUREINFO_notAuthorized,
                     "too early to renew certificate " + previous->serial + ": the renewal window opens on " +
                         formatTime(windowOpens) + " (" + std::to_string(m_policy.renewalWindowDays) +
                         " days before it expires on " + formatTime(previous->notAfter) + ")"});
    }
    if (auto blocked = renewalBlocked(m_store, *previous)) {
      return reject(*blocked);
    }
    X509Ptr previousCert = certificateFromDer(previous->der);
    if (EVP_PKEY_eq(X509_get0_pubkey(previousCert.get()), publicKey.get()) == 1) {
      return reject({OSSL_CMP_PKIFAILUREINFO_badCertTemplate,
                     "a renewal must certify a new key, not the current certificate's key"});
    }
    profile = m_profiles.find(previous->profile);
    if (profile == nullptr) {
      return reject({OSSL_CMP_PKIFAILUREINFO_systemUnavail,
                     "profile " + previous->profile + " is no longer offered; ask for a new issuance"});
    }
    if (auto feeProblem = checkFee(header, *profile)) {
      return reject(*feeProblem);
    }
    subject = nameFromDer(previous->subjectDer);
    notAfter = notAfterFor(*profile);
    origin = "renewal";
    charge = profile->isPaid();
  }

  state.unlock();

  IssueOrder order;
  order.subject = subject.get();
  order.publicKey = publicKey.get();
  order.profile = profile;
  order.notBefore = notBefore;
  order.notAfter = notAfter;
  order.crlUrl = m_policy.crlUrl;
  IssuedCertificate issued = m_authority.issue(order);
  issued.record.issuedAt = now;
  issued.record.origin = origin;
  if (previous) {
    issued.record.replaces = previous->serial;
  }

  // A concurrent request may have used the code or renewed the certificate meanwhile; then this
  // certificate is dropped unrecorded and undelivered.
  state.lock();
  if (transaction.code) {
    const std::optional<EnrolmentCode> current = m_store.findCode(transaction.code->reference);
    if (current && current->usedAt) {
      return reject(usedCodeRejection(current->reference, *current->usedAt));
    }
  } else if (const std::optional<CertificateRecord> current = m_store.findBySerial(previous->serial)) {
    if (auto blocked = renewalBlocked(m_store, *current)) {
      return reject(*blocked);
    }
  }
  // Everything for this certificate lands together or not at all.
  Transaction write = m_store.begin();
  m_store.insertCertificate(issued.record);
  if (transaction.code) {
    m_store.markCodeUsed(transaction.code->reference, issued.record.serial, now);
  }
  if (origin == "reissue" && !previous->revokedAt) {
    m_store.revoke(previous->serial, now, kReasonSuperseded);
  }
  if (charge) {
    m_store.addLedgerEntry({0, now, issued.record.serial, profile->id, profile->feeKrw, origin});
  }
  write.commit();
  state.unlock();

  std::string summary = origin + " of " + profile->brand + " " + profile->type + " certificate " +
                        issued.record.serial + " for " + issued.record.subject + ", " +
                        validityText(notBefore, notAfter);
  summary += charge ? "; fee " + formatKrw(profile->feeKrw) + " charged" : "; no fee";
  if (origin == "reissue") {
    summary += "; certificate " + previous->serial + " revoked";
  }
  logLine(summary);

  // OpenSSL takes ownership of everything handed out here.
  *certOut = X509_dup(issued.certificate.get());
  *chainOut = caCertificateStack().release();
  if (transaction.code && bodyType == body::kIr) {
    // With MAC-based enrolment the client learns its trust anchor from caPubs (RFC 9483 4.1.1).
    *caPubs = caCertificateStack().release();
  }
  transaction.issued = std::move(issued.certificate);
  return accepted(summary);
}

OSSL_CMP_PKISI* CmpService::decideRevocation(CmpTransaction& transaction, const OSSL_CMP_MSG& request,
                                             const X509_NAME* issuer, const ASN1_INTEGER* serial) {
  auto reject = [&](const Rejection& rejection) {
    logLine("rr rejected: " + rejection.text);
    return statusOf(rejection);
  };
  if (transaction.decidedRejection) {
    return reject(*transaction.decidedRejection);
  }
  if (issuer == nullptr || serial == nullptr) {
    return reject({OSSL_CMP_PKIFAILUREINFO_badCertId, "rr must name the certificate's issuer and serial number"});
  }
  if (X509_NAME_cmp(issuer, X509_get_subject_name(m_authority.caCertificate())) != 0) {
    return reject({OSSL_CMP_PKIFAILUREINFO_badCertId, "that certificate was not issued by this CA"});
  }
  const std::string targetSerial = serialFromInteger(serial);
  // From the lookup to the revocation, so that two rr of one certificate give one revocation.
  std::lock_guard<std::mutex> state(m_stateMutex);
  std::optional<CertificateRecord> target = m_store.findBySerial(targetSerial);
  if (!target) {
    return reject({OSSL_CMP_PKIFAILUREINFO_badCertId, "certificate " + targetSerial + " is unknown to this CA"});
  }
  const RequestHeader header = readRequestHeader(request);
  const std::string signerKeyId =
      header.senderKid ? toHex(reinterpret_cast<const unsigned char*>(header.senderKid->data()), header.senderKid->size())
                       : std::string();
  if (signerKeyId.empty() || signerKeyId != target->subjectKeyId) {
    return reject({OSSL_CMP_PKIFAILUREINFO_notAuthorized,
                   "rr must be signed with the certificate being revoked; the operator can use `dojang-ca revoke`"});
  }
  if (target->revokedAt) {
    return reject({OSSL_CMP_PKIFAILUREINFO_certRevoked,
                   "certificate " + targetSerial + " was already revoked on " + formatTime(*target->revokedAt)});
  }
  const int64_t now = std::time(nullptr);
  m_store.revoke(targetSerial, now, kReasonUnspecified);
  logLine("revoked certificate " + targetSerial + " at its holder's request");
  return accepted("certificate " + targetSerial + " revoked");
}

void CmpService::confirmCertificate(CmpTransaction& transaction, const ASN1_OCTET_STRING* /*certHash*/,
                                    const OSSL_CMP_PKISI* status) {
  transaction.finished = true;
  if (!transaction.issued || status == nullptr) {
    return;
  }
  // OpenSSL has no getter for the status in 3.0; the text form starts with the status name.
  char text[OSSL_CMP_PKISI_BUFLEN];
  const char* printed = OSSL_CMP_snprint_PKIStatusInfo(status, text, sizeof text);
  if (printed != nullptr && std::string(printed).rfind("PKIStatus: accepted", 0) != 0) {
    const std::string serial = serialHex(*transaction.issued);
    {
      std::lock_guard<std::mutex> state(m_stateMutex);
      Transaction write = m_store.begin();
      m_store.revoke(serial, std::time(nullptr), kReasonCessationOfOperation);
      write.commit();
    }
    logLine("client rejected certificate " + serial + " (" + printed + "); revoked it");
  }
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
