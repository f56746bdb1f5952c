// The renewal journal: every step of renewing a certificate on a token, written to SQLite before
// the step's effect can be lost, so that a renewal killed at any point (SIGKILL, power loss) can be
// finished or undone by the next process that opens the journal.
//
// One renewal is one row of `renewals`; every transition also appends a row to `renewal_events`
// (for `dojang renew --history`). The steps, in the only order they may be taken:
//
//   Keygen     begin(): the plan is recorded BEFORE the new key is generated: certificate identity,
//              token serial and label, the old key's CKA_ID, certificate and label, the new key's
//              CKA_ID and pending label (so a crash during generation can find the half-made key),
//              key type, profile, CA, kind, the acknowledged fee, times and the owner's pid.
//   Requested  the request has been sent to the CA. Nothing is confirmed yet.
//   Issued     the CA's certificate (DER) is saved. The engine records it from OpenSSL's certConf
//              callback, before certConf is sent: once the CA considers it issued, we have it.
//   Stored     the new certificate is on the token under the new CKA_ID.
//   Retired    done: the old pair was relabelled or deleted; records when the old pair is due for
//              deletion (if kept for a while) and whether it has been deleted.
//   RolledBack done, undone: the pending key was deleted; records the reason.
//
// A failure either rolls back (from Keygen, Requested or Issued; never from Stored or Retired,
// since the new certificate is already on the token) or leaves the renewal at its step to be
// resumed; recordError() keeps the last error text in the row either way.
//
// Recovery (recoveryFor) of a renewal found unfinished at start-up:
//   Keygen, Requested -> RollBack          delete the pending key found by its CKA_ID, if any
//   Issued            -> StoreCertificate  store the journalled certificate, then retire
//   Stored            -> RetireOld         relabel or delete the old pair
//   Retired, RolledBack -> None
//
// Intended use, in the CLI and in dojangd's `dojang renew --auto` child alike:
//   1. RenewalLock::tryAcquire(journal.path(), key): if empty, another renewal of that
//      certificate is running; try later.
//   2. Recover every unfinished renewal of that certificate (latestFor(key), recoveryFor).
//   3. begin(plan), then advance() through the steps, all while holding the lock.
// begin() refuses a second unfinished renewal of a certificate: Retryable while another process
// holds its lock (it is running), Refused when nobody does (it died; recovery must run first) or
// when this process does (step 2 was skipped).
//
// A Journal is used by one thread at a time; any number of processes may open the same file.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "src/common/sqlite/sqlite.h"

namespace dojang::renewal {

enum class RenewalStep { Keygen, Requested, Issued, Stored, Retired, RolledBack };

// "keygen", "requested", "issued", "stored", "retired", "rolled-back": the journal's own spelling.
[[nodiscard]] std::string_view toString(RenewalStep step) noexcept;
// The inverse of toString; nullopt for anything else.
[[nodiscard]] std::optional<RenewalStep> fromString(std::string_view text) noexcept;
[[nodiscard]] bool isTerminal(RenewalStep step) noexcept;
// The next step in order, or RolledBack from Keygen, Requested or Issued.
[[nodiscard]] bool isAllowedTransition(RenewalStep from, RenewalStep to) noexcept;

// What begin() records: everything needed to finish or undo the renewal without asking anyone.
struct RenewalPlan final {
  std::string certificateKey;  // identity of the certificate renewed, e.g. "<token serial>/<old CKA_ID hex>"
  std::string tokenSerial;
  std::string tokenLabel;
  std::vector<unsigned char> oldKeyId;           // CKA_ID of the pair being replaced; empty for "enroll"
  std::vector<unsigned char> oldCertificateDer;  // empty for "enroll"
  std::string oldLabel;
  std::vector<unsigned char> newKeyId;  // chosen before generation
  std::string pendingLabel;             // the new key's label until the renewal is stored
  std::string keyType;                  // "ec-p256", "rsa-2048", ...
  std::string profile;
  std::string caName;
  std::string kind;  // "renew", "reissue" or "enroll"
  std::optional<int64_t> feeAcknowledgedKrw;
  bool deleteOldAtOnce = false;  // --delete-old: the old pair goes when the new one is stored

  friend bool operator==(const RenewalPlan&, const RenewalPlan&) = default;
};

struct RenewalEvent final {
  int64_t id = 0;
  RenewalStep step = RenewalStep::Keygen;
  int64_t at = 0;  // Unix seconds
  std::string note;
};

struct RenewalRecord final {
  int64_t id = 0;
  RenewalPlan plan;
  RenewalStep step = RenewalStep::Keygen;
  int64_t startedAt = 0;  // Unix seconds
  int64_t updatedAt = 0;
  int64_t ownerPid = 0;  // the process that took the latest step (a recovering process takes over)
  std::vector<unsigned char> issuedCertificateDer;  // from Issued on
  std::optional<int64_t> oldKeyDeleteAfter;         // Retired: when the kept old pair may go
  bool oldKeyDeleted = false;
  std::optional<std::string> rollbackReason;  // RolledBack
  std::optional<std::string> lastError;       // the latest recordError(), kept after later steps
  std::vector<RenewalEvent> events;           // oldest first
};

// What a step records besides the step itself. Fields that do not belong to the target step are
// refused, so that a caller cannot believe it journalled something that was dropped.
struct StepData final {
  std::vector<unsigned char> issuedCertificateDer;  // Issued: required
  std::optional<int64_t> oldKeyDeleteAfter;         // Retired: the old pair was kept until then
  bool oldKeyDeleted = false;                       // Retired: the old pair is already gone
  std::string note;                                 // any step; RolledBack: the reason (required)
};

enum class RecoveryAction { None, RollBack, StoreCertificate, RetireOld };

[[nodiscard]] std::string_view toString(RecoveryAction action) noexcept;
// What the engine must do with `record` when it finds it at start-up (see the table above).
[[nodiscard]] RecoveryAction recoveryFor(const RenewalRecord& record) noexcept;

class Journal final {
 public:
  // Unix seconds; tests pass a fixed clock.
  using Clock = std::function<int64_t()>;

  // Opens or creates the journal at `path`, creating missing parent directories with mode 0700.
  // Throws dojang::Error (Unsupported) when the file was written by a newer dojang.
  explicit Journal(const std::filesystem::path& path, Clock clock = {});

  // $XDG_STATE_HOME/dojang/renewal.db, else $HOME/.local/state/dojang/renewal.db.
  [[nodiscard]] static std::filesystem::path defaultPath();
  [[nodiscard]] const std::filesystem::path& path() const noexcept { return m_path; }

  // Records the plan at Keygen and returns it. Refuses (see the header comment) while another
  // renewal of plan.certificateKey is unfinished, and refuses an incomplete plan (BadInput).
  RenewalRecord begin(const RenewalPlan& plan);
  // One SQLite transaction: checks the transition, updates the row, appends the event. Throws
  // dojang::Error (CKR_FUNCTION_FAILED, Fatal) naming both steps when the transition is illegal.
  RenewalRecord advance(int64_t id, RenewalStep to, const StepData& data = {});
  // Keeps the error text in the row and as an event at the current step; the step is unchanged.
  void recordError(int64_t id, const std::string& errorText);

  [[nodiscard]] std::optional<RenewalRecord> find(int64_t id);
  // The newest renewal of that certificate, finished or not.
  [[nodiscard]] std::optional<RenewalRecord> latestFor(const std::string& certificateKey);
  // The finished renewal (Retired) whose new pair is this key on this token: how that
  // certificate came to be there, if dojang put it there.
  [[nodiscard]] std::optional<RenewalRecord> finishedRenewalThatInstalled(
      const std::string& tokenSerial, const std::vector<unsigned char>& keyId);
  // Renewals not yet Retired or RolledBack, oldest first.
  [[nodiscard]] std::vector<RenewalRecord> unfinished();
  // The newest `limit` renewals, newest first.
  [[nodiscard]] std::vector<RenewalRecord> history(std::size_t limit);

  // Retired renewals whose kept old pair was due for deletion at or before `now`, not yet deleted.
  [[nodiscard]] std::vector<RenewalRecord> dueForOldKeyDeletion(int64_t now);
  // Records that the old pair of a Retired renewal is deleted. False when it already was.
  bool markOldKeyDeleted(int64_t id);

 private:
  void migrate();
  [[nodiscard]] int64_t currentTime() const;
  [[nodiscard]] RenewalRecord require(int64_t id);
  [[nodiscard]] std::vector<RenewalRecord> select(const std::string& whereAndOrder,
                                                  const std::function<void(sqlite::Statement&)>& bind);
  void appendEvent(int64_t id, RenewalStep step, int64_t at, const std::string& note);
  void refuseIfUnfinished(const std::string& certificateKey);

  std::filesystem::path m_path;
  Clock m_clock;
  sqlite::Database m_database;
};

}  // namespace dojang::renewal
