// RenewalEngine::renew and recovery: the journalled steps (renewal_engine.h). The steps they share
// with enrolment and reissue are engine_steps.h; enroll and reissue are renewal_issue.cc.
#include "src/renewal/engine/renewal_engine.h"

#include <openssl/x509.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <utility>

#include "src/common/errors/error.h"
#include "src/common/errors/foreign_errors.h"
#include "src/common/ossl/owners.h"
#include "src/renewal/cmp/cmp_client.h"
#include "src/renewal/engine/engine_steps.h"
#include "src/renewal/engine/fault_point.h"
#include "src/renewal/journal/journal.h"
#include "src/renewal/journal/renewal_lock.h"
#include "src/renewal/token_keys/token_keys.h"

namespace dojang::renewal {

using steps::dateOf;
using steps::deletePending;
using steps::derOf;
using steps::endpointOf;
using steps::kSecondsPerDay;
using steps::millisecondsSince;
using steps::recoverRecord;
using steps::refuse;
using steps::resultOf;
using steps::retireOld;
using steps::unixSeconds;
using steps::verifyIssued;
using steps::withSupport;

RenewalResult RenewalEngine::renew(const RenewalCandidate& candidate, const SecureBytes& pin,
                                   const RenewalChoices& choices, std::chrono::system_clock::time_point now) {
  // Step 1's checks, before the PIN is used or anything is generated.
  if (candidate.window == WindowState::Expired) {
    refuse(ErrorKind::Refused, RenewalProblem::Expired,
           withSupport("certificate \"" + candidate.certificate.label + "\" expired on " +
                           dateOf(candidate.summary.notAfterTime) +
                           "; renewal is no longer possible: get a new one with `dojang reissue`",
                       candidate.profile),
           {{"label", candidate.certificate.label},
            {"expired", dateOf(candidate.summary.notAfterTime)},
            {"support", candidate.profile ? supportLine(*candidate.profile) : ""}});
  }
  if (candidate.window == WindowState::TooEarly) {
    refuse(ErrorKind::Refused, RenewalProblem::TooEarly,
           "too early to renew \"" + candidate.certificate.label + "\": the renewal window opens on " +
               dateOf(candidate.windowOpens) + " (" + std::to_string(m_settings.profiles.renewalWindowDays) +
               " days before it expires on " + dateOf(candidate.summary.notAfterTime) + ")",
           {{"label", candidate.certificate.label},
            {"opens", dateOf(candidate.windowOpens)},
            {"expires", dateOf(candidate.summary.notAfterTime)},
            {"window_days", std::to_string(m_settings.profiles.renewalWindowDays)}});
  }
  const long long fee = candidate.profile ? candidate.profile->feeKrw : 0;
  if (fee > 0) {
    if (choices.acceptedFeeKrw) {
      if (*choices.acceptedFeeKrw != fee) {
        refuse(ErrorKind::BadInput, RenewalProblem::FeeMismatch,
               "the CA's fee for " + candidate.typeLabel + " is " + ca::formatFee(fee) + "; --accept-fee " +
                   std::to_string(*choices.acceptedFeeKrw) + " does not match, so nothing was generated",
               {{"type", candidate.typeLabel},
                {"fee", std::to_string(fee)},
                {"offered", std::to_string(*choices.acceptedFeeKrw)}});
      }
    } else if (!choices.confirmFee || !choices.confirmFee(*candidate.profile)) {
      refuse(ErrorKind::Refused, RenewalProblem::FeeDeclined,
             "the fee of " + ca::formatFee(fee) + " was not accepted; nothing was generated",
             {{"fee", std::to_string(fee)}});
    }
  }

  auto lock = RenewalLock::tryAcquire(m_settings.journalPath, candidate.certificateKey);
  if (!lock) {
    refuse(ErrorKind::Retryable, RenewalProblem::Busy,
           "another renewal of \"" + candidate.certificate.label + "\" is running; try later",
           {{"label", candidate.certificate.label}});
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
        refuse(ErrorKind::Retryable, RenewalProblem::Busy,
               "another renewal of \"" + previous.plan.oldLabel + "\" is running; try later",
               {{"label", previous.plan.oldLabel}});
      }
    }
    const bool finished = recoveryFor(previous) != RecoveryAction::RollBack;
    (void)recoverRecord(journal, token, previous, m_settings.retireDays);
    if (finished) {
      refuse(ErrorKind::Refused, RenewalProblem::AlreadyFinished,
             "an interrupted renewal of \"" + previous.plan.oldLabel + "\" (journal #" +
                 std::to_string(previous.id) +
                 ") has now been finished; its certificate is stored, so there is nothing more to renew",
             {{"label", previous.plan.oldLabel}, {"journal", std::to_string(previous.id)}});
    }
  }

  // Housekeeping while the token is open: retired pairs whose retire_days are over go now.
  (void)steps::deleteDueOldPairs(journal, token, now);

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
  plan.deleteOldAtOnce = choices.deleteOld;
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
  RenewalTimings timings;
  try {
    auto started = std::chrono::steady_clock::now();
    (void)token.generateKeyPair(spec, plan.newKeyId, plan.pendingLabel);
    timings.keygen = millisecondsSince(started);
    faultPoint("generated");
    keys.emplace(m_settings.modulePath, TokenSelector{candidate.token.serial, ""});
    keys->login(pin);
    oldKey = keys->privateKey(plan.oldKeyId);
    newKey = keys->privateKey(plan.newKeyId);
    auto oldCertificate = parseCertificate(plan.oldCertificateDer);
    journal.advance(record.id, RenewalStep::Requested);
    faultPoint("requested");
    started = std::chrono::steady_clock::now();
    auto answer = cmp::keyUpdate(
        endpointOf(m_settings.ca), *oldKey, *oldCertificate, *newKey,
        fee > 0 ? std::optional<long>(static_cast<long>(fee)) : std::nullopt, [&](X509& certificate) {
          const auto checking = std::chrono::steady_clock::now();
          verifyIssued(certificate, *newKey, *oldCertificate, candidate, m_settings, now);
          timings.verify = millisecondsSince(checking);
          StepData data;
          data.issuedCertificateDer = derOf(certificate);
          journal.advance(record.id, RenewalStep::Issued, data);
          faultPoint("issued");
        });
    timings.cmp = millisecondsSince(started) - timings.verify;
    issuedDer = derOf(*answer.certificate);
  } catch (const Error& error) {
    failure = error.what();
    failureError = error;
  } catch (const std::exception& error) {
    failure = error.what();
  }
  if (issuedDer.empty()) {
    std::string leftOver;
    if (auto journalled =
            steps::issuedOrRolledBack(journal, token, record.id, plan.newKeyId, failure, leftOver)) {
      issuedDer = std::move(*journalled);
    } else {
      const ErrorKind kind = failureError ? failureError->kind() : ErrorKind::Fatal;
      throw RenewalError(
          failureError ? failureError->rv() : CKR_FUNCTION_FAILED, kind, RenewalProblem::RequestFailed,
          withSupport("renewal failed; the old certificate and key are unchanged: " + failure + leftOver,
                      kind == ErrorKind::Refused ? candidate.profile : std::nullopt),
          {{"detail", failure + leftOver},
           {"support",
            kind == ErrorKind::Refused && candidate.profile ? supportLine(*candidate.profile) : ""}},
          failureError ? failureError->pinRetriesLeft() : std::nullopt);
    }
  }

  // From here the CA has issued: finish (a crash or a failure now is resumed by recovery, so the
  // error says so rather than the token's bare CK_RV).
  std::string oldPair;
  const auto writing = std::chrono::steady_clock::now();
  try {
    token.storeCertificate(issuedDer, plan.newKeyId, plan.oldLabel);
    faultPoint("stored-on-token");
    journal.advance(record.id, RenewalStep::Stored);
    faultPoint("stored");
    oldPair = retireOld(token, plan, plan.deleteOldAtOnce, m_settings.retireDays, now);
    StepData retired;
    retired.oldKeyDeleted = plan.deleteOldAtOnce;
    if (!plan.deleteOldAtOnce) {
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
    throw RenewalError(
        dojangError != nullptr ? dojangError->rv() : CKR_FUNCTION_FAILED,
        dojangError != nullptr ? dojangError->kind() : ErrorKind::Fatal, RenewalProblem::NotInstalled,
        "the CA issued the new certificate (journal #" + std::to_string(record.id) +
            ") but it could not be installed on the token yet: " + error.what() +
            "; the old certificate and key still work, and `dojang renew --recover` finishes the "
            "renewal when the token is back",
        {{"journal", std::to_string(record.id)}, {"detail", error.what()}});
  }

  timings.tokenWrites = millisecondsSince(writing);
  auto result = resultOf(record.id, plan, issuedDer, oldPair, fee, now);
  result.timings = timings;
  return result;
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
  // Retired pairs whose retire_days are over, on the tokens present.
  const auto now = std::chrono::system_clock::now();
  const auto due = journal.dueForOldKeyDeletion(unixSeconds(now));
  for (const auto& token : tokens) {
    const bool anyHere = std::any_of(due.begin(), due.end(), [&](const RenewalRecord& record) {
      return record.plan.tokenSerial == token.serial;
    });
    if (anyHere) {
      RenewalToken session(m_functions, token);
      session.login(pin);
      for (auto& line : steps::deleteDueOldPairs(journal, session, now)) {
        report.push_back(std::move(line));
      }
    }
  }
  return report;
}

}  // namespace dojang::renewal
