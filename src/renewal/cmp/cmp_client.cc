#include "src/renewal/cmp/cmp_client.h"

#include <openssl/asn1.h>
#include <openssl/bioerr.h>
#include <openssl/cmp.h>
#include <openssl/cmperr.h>
#include <openssl/err.h>
#include <openssl/httperr.h>
#include <openssl/objects.h>

#include <array>
#include <exception>
#include <string_view>
#include <utility>

#include "src/common/errors/foreign_errors.h"

namespace dojang::renewal::cmp {

CaRejection::CaRejection(const std::string& message, int pkiStatus, std::vector<std::string> failInfo,
                         std::vector<std::string> statusText, CallSite where)
    : Error(CKR_FUNCTION_FAILED, ErrorKind::Refused, message, where),
      m_pkiStatus(pkiStatus),
      m_failInfo(std::move(failInfo)),
      m_statusText(std::move(statusText)) {}

namespace {

// RFC 9810 PKIFailureInfo, by bit number (OSSL_CMP_PKIFAILUREINFO_badAlg = 0 ...).
constexpr std::array<const char*, OSSL_CMP_PKIFAILUREINFO_MAX + 1> kFailInfoNames = {
    "badAlg",           "badMessageCheck",     "badRequest",          "badTime",           "badCertId",
    "badDataFormat",    "wrongAuthority",      "incorrectData",       "missingTimeStamp",  "badPOP",
    "certRevoked",      "certConfirmed",       "wrongIntegrity",      "badRecipientNonce", "timeNotAvailable",
    "unacceptedPolicy", "unacceptedExtension", "addInfoNotAvailable", "badSenderNonce",    "badCertTemplate",
    "signerNotTrusted", "transactionIdInUse",  "unsupportedVersion",  "notAuthorized",     "systemUnavail",
    "systemFailure",    "duplicateCertReq"};

const char* statusName(int status) {
  switch (status) {
    case OSSL_CMP_PKISTATUS_accepted:
      return "accepted";
    case OSSL_CMP_PKISTATUS_grantedWithMods:
      return "grantedWithMods";
    case OSSL_CMP_PKISTATUS_rejection:
      return "rejection";
    case OSSL_CMP_PKISTATUS_waiting:
      return "waiting";
    case OSSL_CMP_PKISTATUS_revocationWarning:
      return "revocationWarning";
    case OSSL_CMP_PKISTATUS_revocationNotification:
      return "revocationNotification";
    case OSSL_CMP_PKISTATUS_keyUpdateWarning:
      return "keyUpdateWarning";
    default:
      return "unknown";
  }
}

std::string endpointName(const Endpoint& endpoint) {
  return "http://" + endpoint.host + ":" + std::to_string(endpoint.port) + endpoint.path;
}

// What the certConf callback needs: the engine's hook, and what it threw.
struct Confirmation final {
  const BeforeConfirm* hook = nullptr;
  std::exception_ptr thrown;
  bool called = false;
};

// OpenSSL calls this with the new certificate before it sends certConf; non-zero rejects it.
int confirmCertificate(OSSL_CMP_CTX* ctx, X509* certificate, int failInfo, const char** text) {
  auto* confirmation = static_cast<Confirmation*>(OSSL_CMP_CTX_get_certConf_cb_arg(ctx));
  // OpenSSL's own checks first (the new key matches the certificate). Its callback reads the
  // argument as a trust store for the new certificate: it gets none while it runs.
  (void)OSSL_CMP_CTX_set_certConf_cb_arg(ctx, nullptr);
  failInfo = OSSL_CMP_certConf_cb(ctx, certificate, failInfo, text);
  (void)OSSL_CMP_CTX_set_certConf_cb_arg(ctx, confirmation);
  if (failInfo != 0 || confirmation == nullptr || confirmation->hook == nullptr || !*confirmation->hook) {
    return failInfo;
  }
  confirmation->called = true;
  try {
    (*confirmation->hook)(*certificate);
    return 0;
  } catch (...) {
    // No exception may cross OpenSSL's C frames: keep it for after the transaction.
    confirmation->thrown = std::current_exception();
    *text = "the client could not record the certificate";
    return 1 << OSSL_CMP_PKIFAILUREINFO_systemFailure;
  }
}

// CMP's progress lines go nowhere; failures reach the caller through the error queue.
int quietLog(const char*, const char*, int, OSSL_CMP_severity, const char*) {
  return 1;
}

CmpCtxPtr newContext(const Endpoint& endpoint, std::optional<long> feeKrw, Confirmation& confirmation) {
  CmpCtxPtr ctx(checkOpenssl(OSSL_CMP_CTX_new(nullptr, nullptr), "OSSL_CMP_CTX_new"));
  checkOpensslStatus(OSSL_CMP_CTX_set_log_cb(ctx.get(), quietLog), "OSSL_CMP_CTX_set_log_cb");
  checkOpensslStatus(OSSL_CMP_CTX_set1_server(ctx.get(), endpoint.host.c_str()), "OSSL_CMP_CTX_set1_server");
  checkOpensslStatus(OSSL_CMP_CTX_set_serverPort(ctx.get(), endpoint.port), "OSSL_CMP_CTX_set_serverPort");
  checkOpensslStatus(OSSL_CMP_CTX_set1_serverPath(ctx.get(), endpoint.path.c_str()),
                     "OSSL_CMP_CTX_set1_serverPath");
  checkOpensslStatus(OSSL_CMP_CTX_set_option(ctx.get(), OSSL_CMP_OPT_MSG_TIMEOUT,
                                             static_cast<int>(endpoint.messageTimeout.count())),
                     "OSSL_CMP_OPT_MSG_TIMEOUT");
  checkOpensslStatus(OSSL_CMP_CTX_set_option(ctx.get(), OSSL_CMP_OPT_TOTAL_TIMEOUT,
                                             static_cast<int>(endpoint.totalTimeout.count())),
                     "OSSL_CMP_OPT_TOTAL_TIMEOUT");
  // Responses (and the CA's signed rejections) must chain to these.
  X509StorePtr trusted(checkOpenssl(X509_STORE_new(), "X509_STORE_new"));
  if (X509_STORE_load_file(trusted.get(), endpoint.trustedCertificatesFile.c_str()) != 1) {
    throw Error(CKR_FUNCTION_FAILED, ErrorKind::BadInput,
                "cannot read the CA certificates to trust from '" + endpoint.trustedCertificatesFile +
                    "': " + takeOpensslErrors().text);
  }
  checkOpensslStatus(OSSL_CMP_CTX_set0_trustedStore(ctx.get(), trusted.get()),
                     "OSSL_CMP_CTX_set0_trustedStore");
  (void)trusted.release();  // the context owns it now
  if (feeKrw) {
    Asn1ObjectPtr type(checkOpenssl(OBJ_txt2obj(kFeeAcknowledgementOid, 1), "OBJ_txt2obj"));
    Asn1IntegerPtr amount(checkOpenssl(ASN1_INTEGER_new(), "ASN1_INTEGER_new"));
    checkOpensslStatus(ASN1_INTEGER_set_int64(amount.get(), *feeKrw), "ASN1_INTEGER_set_int64");
    ASN1_TYPE* value = checkOpenssl(ASN1_TYPE_new(), "ASN1_TYPE_new");
    ASN1_TYPE_set(value, V_ASN1_INTEGER, amount.release());
    OSSL_CMP_ITAV* itav = OSSL_CMP_ITAV_create(type.get(), value);
    if (itav == nullptr) {
      ASN1_TYPE_free(value);
      throwOpenssl("OSSL_CMP_ITAV_create");
    }
    (void)type.release();  // the ITAV owns both now
    if (OSSL_CMP_CTX_push0_geninfo_ITAV(ctx.get(), itav) != 1) {
      OSSL_CMP_ITAV_free(itav);
      throwOpenssl("OSSL_CMP_CTX_push0_geninfo_ITAV");
    }
  }
  checkOpensslStatus(OSSL_CMP_CTX_set_certConf_cb(ctx.get(), confirmCertificate),
                     "OSSL_CMP_CTX_set_certConf_cb");
  checkOpensslStatus(OSSL_CMP_CTX_set_certConf_cb_arg(ctx.get(), &confirmation),
                     "OSSL_CMP_CTX_set_certConf_cb_arg");
  return ctx;
}

void setNewKey(OSSL_CMP_CTX* ctx, EVP_PKEY& newKey) {
  checkOpensslStatus(EVP_PKEY_up_ref(&newKey), "EVP_PKEY_up_ref");
  if (OSSL_CMP_CTX_set0_newPkey(ctx, 1, &newKey) != 1) {
    EVP_PKEY_free(&newKey);
    throwOpenssl("OSSL_CMP_CTX_set0_newPkey");
  }
}

void setProtectionKey(OSSL_CMP_CTX* ctx, EVP_PKEY& oldKey, X509& oldCertificate) {
  checkOpensslStatus(OSSL_CMP_CTX_set1_cert(ctx, &oldCertificate), "OSSL_CMP_CTX_set1_cert");
  checkOpensslStatus(OSSL_CMP_CTX_set1_pkey(ctx, &oldKey), "OSSL_CMP_CTX_set1_pkey");
}

bool has(const OpensslErrors& errors, int library, int reason) {
  for (const unsigned long code : errors.codes) {
    if (ERR_GET_LIB(code) == library && ERR_GET_REASON(code) == reason) {
      return true;
    }
  }
  return false;
}

bool hasLibrary(const OpensslErrors& errors, int library) {
  for (const unsigned long code : errors.codes) {
    if (ERR_GET_LIB(code) == library) {
      return true;
    }
  }
  return false;
}

[[noreturn]] void throwRejection(OSSL_CMP_CTX* ctx, const std::string& what, int status,
                                 OpensslErrors errors) {
  std::vector<std::string> failInfo;
  const int bits = OSSL_CMP_CTX_get_failInfoCode(ctx);
  for (std::size_t bit = 0; bits > 0 && bit < kFailInfoNames.size(); ++bit) {
    if ((bits & (1 << bit)) != 0) {
      failInfo.emplace_back(kFailInfoNames[bit]);
    }
  }
  std::vector<std::string> text;
  const OSSL_CMP_PKIFREETEXT* strings = OSSL_CMP_CTX_get0_statusString(ctx);
  for (int i = 0; strings != nullptr && i < sk_ASN1_UTF8STRING_num(strings); ++i) {
    const ASN1_UTF8STRING* entry = sk_ASN1_UTF8STRING_value(strings, i);
    text.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(entry)),
                      static_cast<std::size_t>(ASN1_STRING_length(entry)));
  }
  std::string message = what + ": the CA refused (PKIStatus " + statusName(status);
  for (std::size_t i = 0; i < failInfo.size(); ++i) {
    message += (i == 0 ? "; failInfo " : ", ") + failInfo[i];
  }
  message += ")";
  for (const std::string& line : text) {
    message += ": " + line;
  }
  if (!errors.text.empty()) {
    message += " [" + errors.text + "]";
  }
  throw CaRejection(message, status, std::move(failInfo), std::move(text));
}

// After a failed OSSL_CMP_exec_*: the hook's exception, the CA's refusal, or a transport failure.
[[noreturn]] void throwFailure(OSSL_CMP_CTX* ctx, const Endpoint& endpoint, std::string_view request,
                               const Confirmation& confirmation) {
  OpensslErrors errors = takeOpensslErrors();
  if (confirmation.thrown) {
    std::rethrow_exception(confirmation.thrown);
  }
  const std::string where = endpointName(endpoint);
  const std::string what = std::string(request) + " at " + where;
  const int status = OSSL_CMP_CTX_get_status(ctx);
  if (status == OSSL_CMP_PKISTATUS_rejection || status == OSSL_CMP_PKISTATUS_waiting) {
    throwRejection(ctx, what, status, std::move(errors));
  }
  const auto fail = [&](ErrorKind kind, const std::string& why) -> void {
    throw Error(CKR_FUNCTION_FAILED, kind,
                what + ": " + why + (errors.text.empty() ? "" : ": " + errors.text));
  };
  const std::string hostPort = endpoint.host + ":" + std::to_string(endpoint.port);
  if (has(errors, ERR_LIB_BIO, BIO_R_CONNECT_TIMEOUT)) {
    // OpenSSL 3.0 retries refused connections until the message timeout, then says this.
    fail(ErrorKind::Retryable, "cannot connect to the CA at " + hostPort + " (refused or unanswered for " +
                                   std::to_string(endpoint.messageTimeout.count()) + " s)");
  }
  if (has(errors, ERR_LIB_CMP, CMP_R_TOTAL_TIMEOUT) || has(errors, ERR_LIB_HTTP, HTTP_R_RETRY_TIMEOUT) ||
      has(errors, ERR_LIB_BIO, BIO_R_TRANSFER_TIMEOUT)) {
    fail(ErrorKind::Retryable, "the CA at " + hostPort + " did not answer in time (message timeout " +
                                   std::to_string(endpoint.messageTimeout.count()) + " s, total " +
                                   std::to_string(endpoint.totalTimeout.count()) + " s)");
  }
  if (has(errors, ERR_LIB_HTTP, HTTP_R_CONNECT_FAILURE) || has(errors, ERR_LIB_BIO, BIO_R_CONNECT_ERROR) ||
      hasLibrary(errors, ERR_LIB_SYS) || has(errors, ERR_LIB_HTTP, HTTP_R_SERVER_CANCELED_CONNECTION) ||
      has(errors, ERR_LIB_HTTP, HTTP_R_ERROR_SENDING) || has(errors, ERR_LIB_HTTP, HTTP_R_ERROR_RECEIVING)) {
    fail(ErrorKind::Retryable, "cannot reach the CA at " + hostPort);
  }
  if (has(errors, ERR_LIB_HTTP, HTTP_R_RECEIVED_ERROR) ||
      has(errors, ERR_LIB_HTTP, HTTP_R_STATUS_CODE_UNSUPPORTED)) {
    // OpenSSL's data says "code=NNN,reason=...": a 5xx may pass, a 4xx will not.
    const bool serverSide = errors.text.find("code=5") != std::string::npos;
    fail(serverSide ? ErrorKind::Retryable : ErrorKind::Fatal, "the CA answered with an HTTP error");
  }
  if (hasLibrary(errors, ERR_LIB_HTTP)) {
    fail(ErrorKind::Fatal, "the CA's HTTP answer is not a CMP response");
  }
  if (has(errors, ERR_LIB_CMP, CMP_R_TRANSFER_ERROR)) {
    fail(ErrorKind::Retryable, "the transfer to the CA at " + hostPort + " failed");
  }
  fail(ErrorKind::Fatal, "the CMP exchange failed");
  std::terminate();  // fail always throws
}

Issued collect(OSSL_CMP_CTX* ctx, X509* certificate) {
  Issued issued;
  checkOpensslStatus(X509_up_ref(certificate), "X509_up_ref");
  issued.certificate.reset(certificate);
  X509StackPtr caPubs(OSSL_CMP_CTX_get1_caPubs(ctx));
  while (caPubs && sk_X509_num(caPubs.get()) > 0) {
    issued.caCertificates.emplace_back(sk_X509_shift(caPubs.get()));
  }
  return issued;
}

// Runs one transaction (request, response, certConf) and turns its outcome into ours.
Issued execute(OSSL_CMP_CTX* ctx, int requestType, const Endpoint& endpoint, std::string_view request,
               const Confirmation& confirmation) {
  ERR_clear_error();  // only this transaction's failures go into its message
  X509* certificate = OSSL_CMP_exec_certreq(ctx, requestType, nullptr);
  if (certificate == nullptr) {
    throwFailure(ctx, endpoint, request, confirmation);
  }
  return collect(ctx, certificate);
}

}  // namespace

Issued keyUpdate(const Endpoint& endpoint, EVP_PKEY& oldKey, X509& oldCertificate, EVP_PKEY& newKey,
                 std::optional<long> feeKrw, const BeforeConfirm& beforeConfirm) {
  Confirmation confirmation{&beforeConfirm};
  CmpCtxPtr ctx = newContext(endpoint, feeKrw, confirmation);
  setProtectionKey(ctx.get(), oldKey, oldCertificate);
  setNewKey(ctx.get(), newKey);
  return execute(ctx.get(), OSSL_CMP_KUR, endpoint, "key update (kur)", confirmation);
}

Issued p10crUpdate(const Endpoint& endpoint, EVP_PKEY& oldKey, X509& oldCertificate, EVP_PKEY& newKey,
                   std::optional<long> feeKrw, const BeforeConfirm& beforeConfirm) {
  X509ReqPtr csr(checkOpenssl(X509_REQ_new(), "X509_REQ_new"));
  checkOpensslStatus(X509_REQ_set_version(csr.get(), X509_REQ_VERSION_1), "X509_REQ_set_version");
  checkOpensslStatus(X509_REQ_set_subject_name(csr.get(), X509_get_subject_name(&oldCertificate)),
                     "X509_REQ_set_subject_name");
  // The CSR keeps a plain copy of the public key, not a reference to the token key.
  unsigned char* encoded = nullptr;
  const int length = i2d_PUBKEY(&newKey, &encoded);
  if (length <= 0) {
    throwOpenssl("encoding the new public key");
  }
  OpensslBytesPtr encodedOwner(encoded);
  const unsigned char* cursor = encoded;
  PkeyPtr publicKey(checkOpenssl(d2i_PUBKEY(nullptr, &cursor, length), "decoding the new public key"));
  checkOpensslStatus(X509_REQ_set_pubkey(csr.get(), publicKey.get()), "X509_REQ_set_pubkey");
  // The token signs the CSR: this is the new key's proof of possession.
  if (X509_REQ_sign(csr.get(), &newKey, EVP_sha256()) <= 0) {
    throwOpenssl("signing the PKCS#10 request with the new key");
  }
  Confirmation confirmation{&beforeConfirm};
  CmpCtxPtr ctx = newContext(endpoint, feeKrw, confirmation);
  setProtectionKey(ctx.get(), oldKey, oldCertificate);
  checkOpensslStatus(OSSL_CMP_CTX_set1_p10CSR(ctx.get(), csr.get()), "OSSL_CMP_CTX_set1_p10CSR");
  setNewKey(ctx.get(), newKey);  // lets OpenSSL check that the certificate is for this key
  return execute(ctx.get(), OSSL_CMP_P10CR, endpoint, "key update (p10cr)", confirmation);
}

Issued enrol(const Endpoint& endpoint, const std::string& reference, const SecureBytes& secret,
             EVP_PKEY& newKey, std::optional<long> feeKrw, const BeforeConfirm& beforeConfirm) {
  Confirmation confirmation{&beforeConfirm};
  CmpCtxPtr ctx = newContext(endpoint, feeKrw, confirmation);
  checkOpensslStatus(
      OSSL_CMP_CTX_set1_referenceValue(ctx.get(), reinterpret_cast<const unsigned char*>(reference.data()),
                                       static_cast<int>(reference.size())),
      "OSSL_CMP_CTX_set1_referenceValue");
  checkOpensslStatus(OSSL_CMP_CTX_set1_secretValue(ctx.get(), secret.data(), static_cast<int>(secret.size())),
                     "OSSL_CMP_CTX_set1_secretValue");
  // OpenSSL needs a subject for the template; the CA uses the one it registered instead.
  X509NamePtr subject(checkOpenssl(X509_NAME_new(), "X509_NAME_new"));
  checkOpensslStatus(
      X509_NAME_add_entry_by_txt(subject.get(), "CN", MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>("applicant"), -1, -1, 0),
      "X509_NAME_add_entry_by_txt");
  checkOpensslStatus(OSSL_CMP_CTX_set1_subjectName(ctx.get(), subject.get()),
                     "OSSL_CMP_CTX_set1_subjectName");
  setNewKey(ctx.get(), newKey);
  return execute(ctx.get(), OSSL_CMP_IR, endpoint, "enrolment (ir)", confirmation);
}

}  // namespace dojang::renewal::cmp
