// CmpService's decisions, the CA's policy: certificate requests (issue, reissue, renewal),
// revocation requests and certConf.
#include "src/ca/cmp_server/cmp_service.h"

#include <openssl/bn.h>

#include <ctime>

#include "src/ca/cmp_server/cmp_transaction.h"
#include "src/ca/cmp_server/message_view.h"
#include "src/ca/cmp_server/rejections.h"
#include "src/common/errors/foreign_errors.h"

namespace dojang::ca {

namespace {

constexpr int64_t kSecondsPerDay = 86400;
constexpr int64_t kReasonUnspecified = 0;
constexpr int64_t kReasonSuperseded = 4;
constexpr int64_t kReasonCessationOfOperation = 5;

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
  sqlite::Transaction write = m_store.begin();
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
      sqlite::Transaction write = m_store.begin();
      m_store.revoke(serial, std::time(nullptr), kReasonCessationOfOperation);
      write.commit();
    }
    logLine("client rejected certificate " + serial + " (" + printed + "); revoked it");
  }
}

}  // namespace dojang::ca
