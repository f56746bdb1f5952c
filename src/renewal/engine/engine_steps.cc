#include "src/renewal/engine/engine_steps.h"

#include <openssl/x509_vfy.h>

#include <utility>

#include "src/common/cryptoki/hex_text.h"
#include "src/common/errors/foreign_errors.h"
#include "src/common/ossl/owners.h"
#include "src/renewal/engine/fault_point.h"

namespace dojang::renewal::steps {

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

void refuse(ErrorKind kind, RenewalProblem problem, const std::string& message,
            std::map<std::string, std::string> facts) {
  throw RenewalError(CKR_FUNCTION_FAILED, kind, problem, message, std::move(facts));
}

std::string withSupport(const std::string& message, const std::optional<ca::Profile>& profile) {
  if (!profile) {
    return message;
  }
  const auto support = supportLine(*profile);
  return support.empty() ? message : message + " (help: " + support + ")";
}

void verifyIssued(X509& issued, EVP_PKEY& newKey, X509& oldCertificate, const RenewalCandidate& candidate,
                  const EngineSettings& settings, std::chrono::system_clock::time_point now) {
  if (EVP_PKEY_eq(X509_get0_pubkey(&issued), &newKey) != 1) {
    refuse(ErrorKind::Refused, RenewalProblem::WrongCertificate,
           "the CA's certificate is not for the new key on the token");
  }
  if (X509_NAME_cmp(X509_get_subject_name(&issued), X509_get_subject_name(&oldCertificate)) != 0) {
    refuse(ErrorKind::Refused, RenewalProblem::WrongCertificate,
           "the CA's certificate names another subject than the old one");
  }
  const auto der = derOf(issued);
  const auto summary = pki::summarizeCertificate(der, now);
  if (summary.policyOid != candidate.summary.policyOid) {
    refuse(ErrorKind::Refused, RenewalProblem::WrongCertificate,
           "the CA's certificate has policy " + summary.policyOid + ", the old one " +
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
      refuse(ErrorKind::Refused, RenewalProblem::WrongCertificate,
             "the CA's certificate is valid " + std::to_string(days) + " days, the profile " + "promises " +
                 std::to_string(promisedDays));
    }
  }
  verifyChain(issued, settings);
}

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
      refuse(ErrorKind::Refused, RenewalProblem::WrongCertificate,
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

void deletePending(RenewalToken& token, const Bytes& newKeyId) {
  for (const auto object : token.allWithId(newKeyId)) {
    token.destroy(object);
  }
}

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
      // A pair already gone was deleted by the interrupted run (--delete-old, journalled in the plan).
      const bool oldGone = !plan.oldKeyId.empty() && token.allWithId(plan.oldKeyId).empty();
      (void)retireOld(token, plan, plan.deleteOldAtOnce, retireDays, now);
      StepData retired;
      retired.oldKeyDeleted = oldGone || (plan.deleteOldAtOnce && !plan.oldKeyId.empty());
      if (!retired.oldKeyDeleted && !plan.oldKeyId.empty()) {
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

std::optional<Bytes> issuedOrRolledBack(Journal& journal, RenewalToken& token, std::int64_t id,
                                        const Bytes& newKeyId, const std::string& failure,
                                        std::string& leftOver) {
  journal.recordError(id, failure);
  const auto current = journal.find(id);
  if (current && current->step == RenewalStep::Issued) {
    // The certificate was journalled before certConf and only the confirmation went wrong.
    return current->issuedCertificateDer;
  }
  // Nothing confirmed: the pending key goes; the old pair was never touched.
  try {
    deletePending(token, newKeyId);
    StepData data;
    data.note = failure;
    journal.advance(id, RenewalStep::RolledBack, data);
  } catch (const std::exception& cleanup) {
    journal.recordError(id, std::string("rollback: ") + cleanup.what());
    leftOver = "; the new key could not be deleted yet (" + std::string(cleanup.what()) +
               "): `dojang renew --recover` deletes it when the token is back";
  }
  return std::nullopt;
}

std::vector<std::string> deleteDueOldPairs(Journal& journal, RenewalToken& token,
                                           std::chrono::system_clock::time_point now) {
  std::vector<std::string> report;
  for (const auto& record : journal.dueForOldKeyDeletion(unixSeconds(now))) {
    const auto& plan = record.plan;
    if (plan.tokenSerial != token.identity().serial || plan.oldKeyId.empty()) {
      continue;
    }
    // A pair relabelled since (or a CKA_ID reused) is not the retired pair any more: left alone.
    const std::string retiredPrefix = plan.oldLabel + " (retired ";
    for (const auto object : token.allWithId(plan.oldKeyId)) {
      const auto label = token.attribute(object, CKA_LABEL).value_or(Bytes{});
      if (std::string(label.begin(), label.end()).rfind(retiredPrefix, 0) == 0) {
        token.destroy(object);
      }
    }
    if (journal.markOldKeyDeleted(record.id)) {
      report.push_back("journal #" + std::to_string(record.id) + ": the retired pair of \"" + plan.oldLabel +
                       "\" is deleted (its " + "retire days are over)");
    }
  }
  return report;
}

RenewalResult resultOf(std::int64_t journalId, const RenewalPlan& plan, const Bytes& issuedDer,
                       std::string oldPair, long long fee, std::chrono::system_clock::time_point now) {
  const auto summary = pki::summarizeCertificate(issuedDer, now);
  RenewalResult result;
  result.journalId = journalId;
  result.certificateKey = plan.certificateKey;
  result.newSerialHex = summary.serialHex;
  result.notBefore = summary.notBefore;
  result.notAfter = summary.notAfter;
  result.newKeyIdHex = hexText(plan.newKeyId);
  result.keyType = plan.keyType;
  result.oldPair = std::move(oldPair);
  result.oldLabel = plan.oldLabel;
  result.typeLabel = summary.koreanPolicy ? pki::koreanLabel(*summary.koreanPolicy) : "certificate";
  result.feeKrw = fee;
  return result;
}

}  // namespace dojang::renewal::steps
