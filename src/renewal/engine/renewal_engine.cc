// RenewalEngine::renew and recovery: the journalled steps (renewal_engine.h).
#include "src/renewal/engine/renewal_engine.h"

#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <utility>

#include "src/common/errors/error.h"
#include "src/common/errors/foreign_errors.h"
#include "src/common/ossl/owners.h"
#include "src/renewal/cmp/cmp_client.h"
#include "src/renewal/engine/fault_point.h"
#include "src/renewal/journal/journal.h"
#include "src/renewal/journal/renewal_lock.h"
#include "src/renewal/token_keys/token_keys.h"

namespace dojang::renewal {

namespace {

constexpr std::int64_t kSecondsPerDay = 86400;

std::string dateOf(std::chrono::system_clock::time_point time) {
  return pki::formatIso8601Utc(time).substr(0, 10);
}

std::int64_t unixSeconds(std::chrono::system_clock::time_point time) {
  return std::chrono::duration_cast<std::chrono::seconds>(time.time_since_epoch()).count();
}

Bytes derOf(X509& certificate) {
  const int length = i2d_X509(&certificate, nullptr);
  if (length <= 0) {
    throwOpenssl("i2d_X509");
  }
  Bytes der(static_cast<std::size_t>(length));
  unsigned char* out = der.data();
  i2d_X509(&certificate, &out);
  return der;
}

[[noreturn]] void refuse(ErrorKind kind, const std::string& message) {
  throw Error(CKR_FUNCTION_FAILED, kind, message);
}

// Appends the CA's support line to a failure people must act on (the seed guide's FAQ advice).
std::string withSupport(const std::string& message, const std::optional<ca::Profile>& profile) {
  if (!profile) {
    return message;
  }
  const auto support = supportLine(*profile);
  return support.empty() ? message : message + " (help: " + support + ")";
}

void verifyChain(X509& issued, const EngineSettings& settings);

// The checks an issued certificate must pass before it is confirmed to the CA.
void verifyIssued(X509& issued, EVP_PKEY& newKey, X509& oldCertificate, const RenewalCandidate& candidate,
                  const EngineSettings& settings, std::chrono::system_clock::time_point now) {
  if (EVP_PKEY_eq(X509_get0_pubkey(&issued), &newKey) != 1) {
    refuse(ErrorKind::Refused, "the CA's certificate is not for the new key on the token");
  }
  if (X509_NAME_cmp(X509_get_subject_name(&issued), X509_get_subject_name(&oldCertificate)) != 0) {
    refuse(ErrorKind::Refused, "the CA's certificate names another subject than the old one");
  }
  const auto der = derOf(issued);
  const auto summary = pki::summarizeCertificate(der, now);
  if (summary.policyOid != candidate.summary.policyOid) {
    refuse(ErrorKind::Refused, "the CA's certificate has policy " + summary.policyOid + ", the old one " +
                                   candidate.summary.policyOid);
  }
  const int promisedDays =
      settings.ca.validityDays.value_or(candidate.profile ? candidate.profile->validityDays : 0);
  if (promisedDays > 0) {
    const auto days =
        std::chrono::duration_cast<std::chrono::seconds>(summary.notAfterTime - summary.notBeforeTime)
            .count() /
        kSecondsPerDay;
    if (days < promisedDays - 1 || days > promisedDays + 1) {
      refuse(ErrorKind::Refused, "the CA's certificate is valid " + std::to_string(days) +
                                     " days, the profile " + "promises " + std::to_string(promisedDays));
    }
  }
  verifyChain(issued, settings);
}

// The issued certificate leads to the configured trust anchor.
void verifyChain(X509& issued, const EngineSettings& settings) {
  if (!settings.ca.trustedFile.empty()) {
    X509StorePtr store(checkOpenssl(X509_STORE_new(), "X509_STORE_new"));
    checkOpensslStatus(X509_STORE_load_file(store.get(), settings.ca.trustedFile.c_str()),
                       "loading the CA's trust anchors from " + settings.ca.trustedFile);
    OpensslPtr<X509_STORE_CTX, X509_STORE_CTX_free> context(
        checkOpenssl(X509_STORE_CTX_new(), "X509_STORE_CTX_new"));
    checkOpensslStatus(X509_STORE_CTX_init(context.get(), store.get(), &issued, nullptr),
                       "X509_STORE_CTX_init");
    if (X509_verify_cert(context.get()) != 1) {
      refuse(ErrorKind::Refused,
             std::string("the CA's certificate does not chain to the configured trust anchor: ") +
                 X509_verify_cert_error_string(X509_STORE_CTX_get_error(context.get())));
    }
  }
}

cmp::Endpoint endpointOf(const CaConfig& ca) {
  cmp::Endpoint endpoint;
  endpoint.host = ca.host;
  endpoint.port = ca.port;
  endpoint.path = ca.path;
  endpoint.trustedCertificatesFile = ca.trustedFile;
  endpoint.messageTimeout = std::chrono::seconds(ca.timeoutSeconds);
  endpoint.totalTimeout = std::chrono::seconds(4 * ca.timeoutSeconds);
  return endpoint;
}

// Deletes whatever carries the pending CKA_ID (the half-made pair of an interrupted renewal).
void deletePending(RenewalToken& token, const Bytes& newKeyId) {
  for (const auto object : token.allWithId(newKeyId)) {
    token.destroy(object);
  }
}

// The new pair takes the old label; the old pair and certificate are relabelled "... (retired
// DATE)", or deleted at once.
std::string retireOld(RenewalToken& token, const RenewalPlan& plan, bool deleteOld, int retireDays,
                      std::chrono::system_clock::time_point now) {
  for (const auto objectClass : {CKO_PRIVATE_KEY, CKO_PUBLIC_KEY}) {
    if (const auto object = token.findById(objectClass, plan.newKeyId)) {
      token.relabel(*object, plan.oldLabel);
    }
  }
  faultPoint("new-relabelled");
  if (plan.oldKeyId.empty()) {
    return "none (a first certificate)";  // an enrolment: there is no old pair
  }
  const auto oldObjects = token.allWithId(plan.oldKeyId);
  if (deleteOld) {
    for (const auto object : oldObjects) {
      token.destroy(object);
    }
    faultPoint("old-retired");
    return "deleted";
  }
  const std::string retiredLabel = plan.oldLabel + " (retired " + dateOf(now) + ")";
  for (const auto object : oldObjects) {
    token.relabel(object, retiredLabel);
  }
  faultPoint("old-retired");
  return "relabelled \"" + retiredLabel + "\", deleted after " +
         dateOf(now + std::chrono::hours(24) * retireDays);
}

// Finishes or undoes one interrupted renewal, under its lock, with the token logged in.
std::string recoverRecord(Journal& journal, RenewalToken& token, const RenewalRecord& record,
                          int retireDays) {
  const auto& plan = record.plan;
  const auto now = std::chrono::system_clock::now();
  const std::string name = "journal #" + std::to_string(record.id) + " (\"" + plan.oldLabel + "\")";
  switch (recoveryFor(record)) {
    case RecoveryAction::RollBack: {
      deletePending(token, plan.newKeyId);
      faultPoint("recovery-deleted-pending");
      StepData data;
      data.note = "interrupted at " + std::string(toString(record.step)) + "; rolled back by the next run";
      journal.advance(record.id, RenewalStep::RolledBack, data);
      return name + ": rolled back; the old certificate and key are unchanged";
    }
    case RecoveryAction::StoreCertificate:
      if (!token.findById(CKO_CERTIFICATE, plan.newKeyId)) {
        token.storeCertificate(record.issuedCertificateDer, plan.newKeyId, plan.oldLabel);
        faultPoint("recovery-stored-on-token");
      }
      journal.advance(record.id, RenewalStep::Stored);
      [[fallthrough]];
    case RecoveryAction::RetireOld: {
      // The plan does not say whether --delete-old was given: a pair already gone was deleted by
      // the interrupted run, and is journalled so rather than given a deletion date.
      const bool oldGone = !plan.oldKeyId.empty() && token.allWithId(plan.oldKeyId).empty();
      (void)retireOld(token, plan, false, retireDays, now);
      StepData retired;
      retired.oldKeyDeleted = oldGone;
      if (!oldGone && !plan.oldKeyId.empty()) {
        retired.oldKeyDeleteAfter = unixSeconds(now) + std::int64_t{retireDays} * kSecondsPerDay;
      }
      journal.advance(record.id, RenewalStep::Retired, retired);
      return name + ": finished; the new certificate is stored";
    }
    case RecoveryAction::None:
      break;
  }
  return name + ": nothing to do";
}

// What a finished renewal or enrolment tells its caller.
RenewalResult resultOf(std::int64_t journalId, const RenewalPlan& plan, const Bytes& issuedDer,
                       std::string oldPair, long long fee, std::chrono::system_clock::time_point now) {
  const auto summary = pki::summarizeCertificate(issuedDer, now);
  RenewalResult result;
  result.journalId = journalId;
  result.certificateKey = plan.certificateKey;
  result.newSerialHex = summary.serialHex;
  result.notBefore = summary.notBefore;
  result.notAfter = summary.notAfter;
  result.newKeyIdHex = hexOf(plan.newKeyId);
  result.keyType = plan.keyType;
  result.oldPair = std::move(oldPair);
  result.oldLabel = plan.oldLabel;
  result.typeLabel = summary.koreanPolicy ? pki::koreanLabel(*summary.koreanPolicy) : "certificate";
  result.feeKrw = fee;
  return result;
}

}  // namespace

RenewalResult RenewalEngine::renew(const RenewalCandidate& candidate, const SecureBytes& pin,
                                   const RenewalChoices& choices, std::chrono::system_clock::time_point now) {
  // Step 1's checks, before the PIN is used or anything is generated.
  if (candidate.window == WindowState::Expired) {
    refuse(ErrorKind::Refused,
           withSupport("certificate \"" + candidate.certificate.label + "\" expired on " +
                           dateOf(candidate.summary.notAfterTime) +
                           "; renewal is no longer possible: get a new one with `dojang reissue`",
                       candidate.profile));
  }
  if (candidate.window == WindowState::TooEarly) {
    refuse(ErrorKind::Refused,
           "too early to renew \"" + candidate.certificate.label + "\": the renewal window opens on " +
               dateOf(candidate.windowOpens) + " (" + std::to_string(m_settings.profiles.renewalWindowDays) +
               " days before it expires on " + dateOf(candidate.summary.notAfterTime) + ")");
  }
  const long long fee = candidate.profile ? candidate.profile->feeKrw : 0;
  if (fee > 0) {
    if (choices.acceptedFeeKrw) {
      if (*choices.acceptedFeeKrw != fee) {
        refuse(ErrorKind::BadInput, "the CA's fee for " + candidate.typeLabel + " is " + ca::formatFee(fee) +
                                        "; --accept-fee " + std::to_string(*choices.acceptedFeeKrw) +
                                        " does not match, so nothing was generated");
      }
    } else if (!choices.confirmFee || !choices.confirmFee(*candidate.profile)) {
      refuse(ErrorKind::Refused,
             "the fee of " + ca::formatFee(fee) + " was not accepted; nothing was generated");
    }
  }

  auto lock = RenewalLock::tryAcquire(m_settings.journalPath, candidate.certificateKey);
  if (!lock) {
    refuse(ErrorKind::Retryable,
           "another renewal of \"" + candidate.certificate.label + "\" is running; try later");
  }
  Journal journal(m_settings.journalPath);
  RenewalToken token(m_functions, candidate.token);
  token.login(pin);  // a wrong PIN stops here, before the journal has anything
  // An interrupted renewal of this certificate, or one that was installing it (its CKA_ID is that
  // renewal's new one), is finished or undone first: renewing a half-installed certificate would
  // leave the older renewal to relabel its pair back later.
  for (const auto& previous : journal.unfinished()) {
    const bool ofThis = previous.plan.certificateKey == candidate.certificateKey;
    const bool installingThis = previous.plan.tokenSerial == candidate.token.serial &&
                                previous.plan.newKeyId == candidate.certificate.id;
    if (!ofThis && !installingThis) {
      continue;
    }
    std::optional<RenewalLock> previousLock;
    if (!ofThis) {
      previousLock = RenewalLock::tryAcquire(m_settings.journalPath, previous.plan.certificateKey);
      if (!previousLock) {
        refuse(ErrorKind::Retryable,
               "another renewal of \"" + previous.plan.oldLabel + "\" is running; try later");
      }
    }
    const bool finished = recoveryFor(previous) != RecoveryAction::RollBack;
    (void)recoverRecord(journal, token, previous, m_settings.retireDays);
    if (finished) {
      refuse(ErrorKind::Refused, "an interrupted renewal of \"" + previous.plan.oldLabel + "\" (journal #" +
                                     std::to_string(previous.id) +
                                     ") has now been finished; its certificate is "
                                     "stored, so there is nothing more to renew");
    }
  }

  const KeySpec spec = choices.keyType.value_or(keySpecOfCertificate(candidate.certificate.der));
  RenewalPlan plan;
  plan.certificateKey = candidate.certificateKey;
  plan.tokenSerial = candidate.token.serial;
  plan.tokenLabel = candidate.token.label;
  plan.oldKeyId = candidate.certificate.id;
  plan.oldCertificateDer = candidate.certificate.der;
  plan.oldLabel = candidate.certificate.label;
  plan.newKeyId.resize(16);
  opensslRandomBytes(plan.newKeyId, "RAND_bytes for the new CKA_ID");
  plan.pendingLabel = candidate.certificate.label + " (renewal pending)";
  plan.keyType = spec.name();
  plan.profile = candidate.profile ? candidate.profile->id : "";
  plan.caName = m_settings.ca.name;
  plan.kind = "renew";
  if (fee > 0) {
    plan.feeAcknowledgedKrw = fee;
  }
  const auto record = journal.begin(plan);
  faultPoint("planned");

  Bytes issuedDer;
  std::string failure;
  std::optional<Error> failureError;
  // libp11's view of the same module, for token-backed EVP_PKEYs. Declared after `token`, so it
  // dies first: its destruction ends this process's use of the module (token_keys.h), which is
  // why it lives until the raw PKCS#11 work below is done too. The keys die before it.
  std::optional<TokenKeys> keys;
  PkeyPtr oldKey;
  PkeyPtr newKey;
  try {
    (void)token.generateKeyPair(spec, plan.newKeyId, plan.pendingLabel);
    faultPoint("generated");
    keys.emplace(m_settings.modulePath, TokenSelector{candidate.token.serial, ""});
    keys->login(pin);
    oldKey = keys->privateKey(plan.oldKeyId);
    newKey = keys->privateKey(plan.newKeyId);
    auto oldCertificate = parseCertificate(plan.oldCertificateDer);
    journal.advance(record.id, RenewalStep::Requested);
    faultPoint("requested");
    auto answer = cmp::keyUpdate(
        endpointOf(m_settings.ca), *oldKey, *oldCertificate, *newKey,
        fee > 0 ? std::optional<long>(static_cast<long>(fee)) : std::nullopt, [&](X509& certificate) {
          verifyIssued(certificate, *newKey, *oldCertificate, candidate, m_settings, now);
          StepData data;
          data.issuedCertificateDer = derOf(certificate);
          journal.advance(record.id, RenewalStep::Issued, data);
          faultPoint("issued");
        });
    issuedDer = derOf(*answer.certificate);
  } catch (const Error& error) {
    failure = error.what();
    failureError = error;
  } catch (const std::exception& error) {
    failure = error.what();
  }
  if (issuedDer.empty()) {
    journal.recordError(record.id, failure);
    const auto current = journal.find(record.id);
    if (current && current->step == RenewalStep::Issued) {
      // The certificate was journalled before certConf and only the confirmation went wrong:
      // the renewal finishes with it.
      issuedDer = current->issuedCertificateDer;
    } else {
      // Nothing confirmed: the pending key goes; the old pair was never touched.
      std::string leftOver;
      try {
        deletePending(token, plan.newKeyId);
        StepData data;
        data.note = failure;
        journal.advance(record.id, RenewalStep::RolledBack, data);
      } catch (const std::exception& cleanup) {
        // The token went away too: the next run (or --recover) deletes the pending key.
        journal.recordError(record.id, std::string("rollback: ") + cleanup.what());
        leftOver = "; the new key could not be deleted yet (" + std::string(cleanup.what()) +
                   "): `dojang renew --recover` deletes it when the token is back";
      }
      const ErrorKind kind = failureError ? failureError->kind() : ErrorKind::Fatal;
      throw Error(
          failureError ? failureError->rv() : CKR_FUNCTION_FAILED, kind,
          withSupport("renewal failed; the old certificate and key are unchanged: " + failure + leftOver,
                      kind == ErrorKind::Refused ? candidate.profile : std::nullopt),
          failureError ? failureError->pinRetriesLeft() : std::nullopt);
    }
  }

  // From here the CA has issued: finish (a crash or a failure now is resumed by recovery, so the
  // error says so rather than the token's bare CK_RV).
  std::string oldPair;
  try {
    token.storeCertificate(issuedDer, plan.newKeyId, plan.oldLabel);
    faultPoint("stored-on-token");
    journal.advance(record.id, RenewalStep::Stored);
    faultPoint("stored");
    oldPair = retireOld(token, plan, choices.deleteOld, m_settings.retireDays, now);
    StepData retired;
    retired.oldKeyDeleted = choices.deleteOld;
    if (!choices.deleteOld) {
      retired.oldKeyDeleteAfter = unixSeconds(now) + std::int64_t{m_settings.retireDays} * kSecondsPerDay;
    }
    journal.advance(record.id, RenewalStep::Retired, retired);
  } catch (const std::exception& error) {
    const auto* dojangError = dynamic_cast<const Error*>(&error);
    try {
      journal.recordError(record.id, error.what());
    } catch (const std::exception&) {
      // the journal keeps the step; the message below is what matters now
    }
    throw Error(dojangError != nullptr ? dojangError->rv() : CKR_FUNCTION_FAILED,
                dojangError != nullptr ? dojangError->kind() : ErrorKind::Fatal,
                "the CA issued the new certificate (journal #" + std::to_string(record.id) +
                    ") but it could not be installed on the token yet: " + error.what() +
                    "; the old certificate and key still work, and `dojang renew --recover` finishes the "
                    "renewal when the token is back");
  }

  return resultOf(record.id, plan, issuedDer, oldPair, fee, now);
}

RenewalResult RenewalEngine::enroll(const TokenIdentity& tokenIdentity, const SecureBytes& pin,
                                    const Enrolment& enrolment, std::chrono::system_clock::time_point now) {
  Journal journal(m_settings.journalPath);
  RenewalToken token(m_functions, tokenIdentity);
  token.login(pin);
  RenewalPlan plan;
  plan.newKeyId.resize(16);
  opensslRandomBytes(plan.newKeyId, "RAND_bytes for the new CKA_ID");
  plan.certificateKey = tokenIdentity.serial + "/" + hexOf(plan.newKeyId);
  plan.tokenSerial = tokenIdentity.serial;
  plan.tokenLabel = tokenIdentity.label;
  plan.oldLabel = enrolment.label;
  plan.pendingLabel = enrolment.label + " (enrolment pending)";
  plan.keyType = enrolment.keyType.name();
  plan.caName = m_settings.ca.name;
  plan.kind = "enroll";
  plan.profile =
      "registered with reference " + enrolment.reference;  // the CA knows it; we learn it on issuance
  if (enrolment.acceptedFeeKrw) {
    plan.feeAcknowledgedKrw = *enrolment.acceptedFeeKrw;
  }
  auto lock = RenewalLock::tryAcquire(m_settings.journalPath, plan.certificateKey);
  if (!lock) {
    refuse(ErrorKind::Retryable, "the enrolment's lock is taken; try again");
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
    auto answer =
        cmp::enrol(endpointOf(m_settings.ca), enrolment.reference, enrolment.authorizationCode, *newKey, fee,
                   [&](X509& certificate) {
                     if (EVP_PKEY_eq(X509_get0_pubkey(&certificate), newKey.get()) != 1) {
                       refuse(ErrorKind::Refused, "the CA's certificate is not for the new key on the token");
                     }
                     verifyChain(certificate, m_settings);
                     StepData data;
                     data.issuedCertificateDer = derOf(certificate);
                     journal.advance(record.id, RenewalStep::Issued, data);
                   });
    issuedDer = derOf(*answer.certificate);
  } catch (const std::exception& error) {
    journal.recordError(record.id, error.what());
    const auto current = journal.find(record.id);
    if (!current || current->step != RenewalStep::Issued) {
      try {
        deletePending(token, plan.newKeyId);
        StepData data;
        data.note = error.what();
        journal.advance(record.id, RenewalStep::RolledBack, data);
      } catch (const std::exception& cleanup) {
        journal.recordError(record.id, std::string("rollback: ") + cleanup.what());
      }
      const auto* dojangError = dynamic_cast<const Error*>(&error);
      throw Error(dojangError != nullptr ? dojangError->rv() : CKR_FUNCTION_FAILED,
                  dojangError != nullptr ? dojangError->kind() : ErrorKind::Fatal,
                  std::string("enrolment failed; nothing was left on the token: ") + error.what());
    }
    issuedDer = current->issuedCertificateDer;
  }
  token.storeCertificate(issuedDer, plan.newKeyId, plan.oldLabel);
  journal.advance(record.id, RenewalStep::Stored);
  const auto oldPair = retireOld(token, plan, false, m_settings.retireDays, now);
  journal.advance(record.id, RenewalStep::Retired, StepData{});

  return resultOf(record.id, plan, issuedDer, oldPair, enrolment.acceptedFeeKrw.value_or(0), now);
}

std::vector<std::string> RenewalEngine::recoverUnfinished(const SecureBytes& pin) {
  std::vector<std::string> report;
  Journal journal(m_settings.journalPath);
  const auto tokens = tokensOf(m_functions);
  for (const auto& record : journal.unfinished()) {
    const auto& plan = record.plan;
    const auto token = std::find_if(tokens.begin(), tokens.end(), [&](const TokenIdentity& present) {
      return present.serial == plan.tokenSerial;
    });
    if (token == tokens.end()) {
      report.push_back("journal #" + std::to_string(record.id) + ": waiting for token \"" + plan.tokenLabel +
                       "\"");
      continue;
    }
    auto lock = RenewalLock::tryAcquire(m_settings.journalPath, plan.certificateKey);
    if (!lock) {
      report.push_back("journal #" + std::to_string(record.id) + ": still running in another process");
      continue;
    }
    RenewalToken session(m_functions, *token);
    session.login(pin);
    report.push_back(recoverRecord(journal, session, record, m_settings.retireDays));
  }
  return report;
}

}  // namespace dojang::renewal
