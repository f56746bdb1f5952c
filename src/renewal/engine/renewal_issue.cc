// RenewalEngine::enroll and reissue: a new pair generated on the token and an ir authenticated
// with the CA's reference number and authorization code (참조번호, 인가코드), journalled like a
// renewal.
#include <openssl/x509.h>

#include "src/common/cryptoki/hex_text.h"
#include "src/common/errors/foreign_errors.h"
#include "src/renewal/cmp/cmp_client.h"
#include "src/renewal/engine/engine_steps.h"
#include "src/renewal/engine/renewal_engine.h"
#include "src/renewal/journal/journal.h"
#include "src/renewal/journal/renewal_lock.h"
#include "src/renewal/token_keys/token_keys.h"

namespace dojang::renewal {

using steps::deletePending;
using steps::derOf;
using steps::endpointOf;
using steps::kSecondsPerDay;
using steps::refuse;
using steps::resultOf;
using steps::retireOld;
using steps::unixSeconds;
using steps::verifyChain;

RenewalResult RenewalEngine::enroll(const TokenIdentity& token, const SecureBytes& pin,
                                    const Enrolment& enrolment, std::chrono::system_clock::time_point now) {
  return issueWithCode("enroll", token, pin, enrolment, nullptr, now);
}

RenewalResult RenewalEngine::reissue(const TokenIdentity& token, const SecureBytes& pin,
                                     const Enrolment& enrolment, const RenewalCandidate* replacing,
                                     std::chrono::system_clock::time_point now) {
  if (replacing != nullptr && replacing->token.serial != token.serial) {
    refuse(ErrorKind::BadInput, RenewalProblem::RequestFailed,
           "the certificate to replace is on token \"" + replacing->token.label + "\", not \"" + token.label +
               "\"",
           {{"detail", "another token"}});
  }
  return issueWithCode("reissue", token, pin, enrolment, replacing, now);
}

RenewalResult RenewalEngine::issueWithCode(const std::string& kind, const TokenIdentity& tokenIdentity,
                                           const SecureBytes& pin, const Enrolment& enrolment,
                                           const RenewalCandidate* replacing,
                                           std::chrono::system_clock::time_point now) {
  Journal journal(m_settings.journalPath);
  RenewalToken token(m_functions, tokenIdentity);
  token.login(pin);
  RenewalPlan plan;
  plan.newKeyId.resize(16);
  opensslRandomBytes(plan.newKeyId, "RAND_bytes for the new CKA_ID");
  plan.certificateKey = tokenIdentity.serial + "/" + hexText(plan.newKeyId);
  plan.tokenSerial = tokenIdentity.serial;
  plan.tokenLabel = tokenIdentity.label;
  plan.oldLabel = enrolment.label;
  if (replacing != nullptr) {
    // The reissue replaces this pair: journalled like a renewal of it, so that the lock and
    // recovery see both, and the old pair is retired at the end.
    plan.certificateKey = replacing->certificateKey;
    plan.oldKeyId = replacing->certificate.id;
    plan.oldCertificateDer = replacing->certificate.der;
    plan.oldLabel = replacing->certificate.label;
  }
  plan.pendingLabel = plan.oldLabel + (kind == "enroll" ? " (enrolment pending)" : " (reissue pending)");
  plan.keyType = enrolment.keyType.name();
  plan.caName = m_settings.ca.name;
  plan.kind = kind;
  plan.profile =
      "registered with reference " + enrolment.reference;  // the CA knows it; we learn it on issuance
  if (enrolment.acceptedFeeKrw) {
    plan.feeAcknowledgedKrw = *enrolment.acceptedFeeKrw;
  }
  auto lock = RenewalLock::tryAcquire(m_settings.journalPath, plan.certificateKey);
  if (!lock) {
    refuse(ErrorKind::Retryable, RenewalProblem::Busy,
           "another renewal of \"" + plan.oldLabel + "\" is running", {{"label", plan.oldLabel}});
  }
  const auto record = journal.begin(plan);
  Bytes issuedDer;
  std::optional<TokenKeys> keys;  // after `token`, as in renew()
  PkeyPtr newKey;
  try {
    (void)token.generateKeyPair(enrolment.keyType, plan.newKeyId, plan.pendingLabel);
    keys.emplace(m_settings.modulePath, TokenSelector{tokenIdentity.serial, ""});
    keys->login(pin);
    newKey = keys->privateKey(plan.newKeyId);
    journal.advance(record.id, RenewalStep::Requested);
    const auto fee = enrolment.acceptedFeeKrw
                         ? std::optional<long>(static_cast<long>(*enrolment.acceptedFeeKrw))
                         : std::nullopt;
    auto answer = cmp::enrol(
        endpointOf(m_settings.ca), enrolment.reference, enrolment.authorizationCode, *newKey, fee,
        [&](X509& certificate) {
          if (EVP_PKEY_eq(X509_get0_pubkey(&certificate), newKey.get()) != 1) {
            refuse(ErrorKind::Refused, RenewalProblem::WrongCertificate,
                   "the CA's certificate is not for the new key on the token");
          }
          verifyChain(certificate, m_settings);
          if (replacing != nullptr) {
            // A reissue keeps the subject and the original expiry (the CA's rule).
            const auto old = parseCertificate(replacing->certificate.der);
            if (X509_NAME_cmp(X509_get_subject_name(&certificate), X509_get_subject_name(old.get())) != 0 ||
                ASN1_TIME_compare(X509_get0_notAfter(&certificate), X509_get0_notAfter(old.get())) != 0) {
              refuse(ErrorKind::Refused, RenewalProblem::WrongCertificate,
                     "the reissued certificate does not keep the old subject and expiry");
            }
          }
          StepData data;
          data.issuedCertificateDer = derOf(certificate);
          journal.advance(record.id, RenewalStep::Issued, data);
        });
    issuedDer = derOf(*answer.certificate);
  } catch (const std::exception& error) {
    std::string leftOver;  // not in this message: "nothing was left" covers the key still to delete
    auto journalled =
        steps::issuedOrRolledBack(journal, token, record.id, plan.newKeyId, error.what(), leftOver);
    if (!journalled) {
      const auto* dojangError = dynamic_cast<const Error*>(&error);
      throw RenewalError(dojangError != nullptr ? dojangError->rv() : CKR_FUNCTION_FAILED,
                         dojangError != nullptr ? dojangError->kind() : ErrorKind::Fatal,
                         RenewalProblem::RequestFailed,
                         (kind == "enroll" ? "enrolment" : "reissue") +
                             std::string(" failed; nothing was left on the token: ") + error.what(),
                         {{"detail", error.what()}});
    }
    issuedDer = std::move(*journalled);
  }
  token.storeCertificate(issuedDer, plan.newKeyId, plan.oldLabel);
  journal.advance(record.id, RenewalStep::Stored);
  const auto oldPair = retireOld(token, plan, false, m_settings.retireDays, now);
  StepData retired;
  if (!plan.oldKeyId.empty()) {
    retired.oldKeyDeleteAfter = unixSeconds(now) + std::int64_t{m_settings.retireDays} * kSecondsPerDay;
  }
  journal.advance(record.id, RenewalStep::Retired, retired);

  return resultOf(record.id, plan, issuedDer, oldPair, enrolment.acceptedFeeKrw.value_or(0), now);
}

}  // namespace dojang::renewal
