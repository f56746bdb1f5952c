// The steps the engine's operations share (renew, enrol, reissue, recovery): inside
// src/renewal/engine only.
#pragma once

#include <openssl/x509.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "src/common/errors/error.h"
#include "src/renewal/cmp/cmp_client.h"
#include "src/renewal/engine/renewal_engine.h"
#include "src/renewal/journal/journal.h"

namespace dojang::renewal::steps {

inline constexpr std::int64_t kSecondsPerDay = 86400;

[[nodiscard]] std::string dateOf(std::chrono::system_clock::time_point time);
[[nodiscard]] std::int64_t unixSeconds(std::chrono::system_clock::time_point time);
[[nodiscard]] Bytes derOf(X509& certificate);

// A refusal people must act on; `problem` and `facts` let the CLI say it in their language.
[[noreturn]] void refuse(ErrorKind kind, RenewalProblem problem, const std::string& message,
                         std::map<std::string, std::string> facts = {});
// Appends the CA's support line ("help: Koscom 고객센터 1577-7337, ...") to the message.
[[nodiscard]] std::string withSupport(const std::string& message, const std::optional<ca::Profile>& profile);

// The issued certificate leads to the configured trust anchor.
void verifyChain(X509& issued, const EngineSettings& settings);
// Everything a renewed certificate must be before it is confirmed: for the new key, the old
// subject and policy, the promised validity, the trust anchor.
void verifyIssued(X509& issued, EVP_PKEY& newKey, X509& oldCertificate, const RenewalCandidate& candidate,
                  const EngineSettings& settings, std::chrono::system_clock::time_point now);
[[nodiscard]] cmp::Endpoint endpointOf(const CaConfig& ca);

// Deletes whatever carries the pending CKA_ID (the half-made pair of an interrupted renewal).
void deletePending(RenewalToken& token, const Bytes& newKeyId);
// The new pair takes the old label; the old pair and certificate are relabelled "... (retired
// DATE)", or deleted at once. Returns what happened to the old pair, for people.
std::string retireOld(RenewalToken& token, const RenewalPlan& plan, bool deleteOld, int retireDays,
                      std::chrono::system_clock::time_point now);
// Finishes or undoes one interrupted renewal, under its lock, with the token logged in.
std::string recoverRecord(Journal& journal, RenewalToken& token, const RenewalRecord& record, int retireDays);
// After a failed request: the certificate journalled at Issued if the CA got that far (the
// operation then finishes with it), else nothing, with the pending key deleted and the renewal
// rolled back. When the key cannot be deleted yet (the token went away too), `leftOver` says so
// and the next run or --recover deletes it.
[[nodiscard]] std::optional<Bytes> issuedOrRolledBack(Journal& journal, RenewalToken& token, std::int64_t id,
                                                      const Bytes& newKeyId, const std::string& failure,
                                                      std::string& leftOver);
// Deletes the retired old pairs on this token whose retire_days are over (the journal says when),
// and only objects still labelled as retired by that renewal. Returns one line per renewal.
std::vector<std::string> deleteDueOldPairs(Journal& journal, RenewalToken& token,
                                           std::chrono::system_clock::time_point now);
// What a finished renewal, enrolment or reissue tells its caller.
[[nodiscard]] RenewalResult resultOf(std::int64_t journalId, const RenewalPlan& plan, const Bytes& issuedDer,
                                     std::string oldPair, long long fee,
                                     std::chrono::system_clock::time_point now);

// Milliseconds since `start`, for the result's timings.
[[nodiscard]] inline double millisecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace dojang::renewal::steps
