#include "src/renewal/journal/journal.h"

#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <ctime>
#include <limits>
#include <utility>

#include "src/common/errors/error.h"
#include "src/renewal/journal/private_directory.h"
#include "src/renewal/journal/renewal_lock.h"

namespace dojang::renewal {
namespace {

// 2: renewals.delete_old_at_once (--delete-old), so that recovery honours it.
constexpr int64_t kSchemaVersion = 2;

// Written for the terminal steps' spellings in kStepNames; a unit test holds the two together.
constexpr const char* kUnfinished = "step NOT IN ('retired', 'rolled-back')";

// The partial unique index makes "one unfinished renewal per certificate" the database's rule too,
// whatever a caller does between its checks.
constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS renewals (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  certificate_key TEXT NOT NULL,
  token_serial TEXT NOT NULL,
  token_label TEXT NOT NULL,
  old_key_id BLOB,
  old_certificate_der BLOB,
  old_label TEXT NOT NULL,
  new_key_id BLOB NOT NULL,
  pending_label TEXT NOT NULL,
  key_type TEXT NOT NULL,
  profile TEXT NOT NULL,
  ca_name TEXT NOT NULL,
  kind TEXT NOT NULL,
  fee_acknowledged_krw INTEGER,
  step TEXT NOT NULL,
  started_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  owner_pid INTEGER NOT NULL,
  issued_certificate_der BLOB,
  old_key_delete_after INTEGER,
  old_key_deleted INTEGER NOT NULL DEFAULT 0,
  rollback_reason TEXT,
  last_error TEXT,
  delete_old_at_once INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX IF NOT EXISTS renewals_one_unfinished_per_certificate
  ON renewals(certificate_key) WHERE step NOT IN ('retired', 'rolled-back');
CREATE INDEX IF NOT EXISTS renewals_by_certificate ON renewals(certificate_key, id);
CREATE TABLE IF NOT EXISTS renewal_events (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  renewal_id INTEGER NOT NULL REFERENCES renewals(id),
  step TEXT NOT NULL,
  at INTEGER NOT NULL,
  note TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS renewal_events_by_renewal ON renewal_events(renewal_id, id);
)sql";

constexpr const char* kRenewalColumns =
    "id, certificate_key, token_serial, token_label, old_key_id, old_certificate_der, old_label, "
    "new_key_id, pending_label, key_type, profile, ca_name, kind, fee_acknowledged_krw, step, "
    "started_at, updated_at, owner_pid, issued_certificate_der, old_key_delete_after, old_key_deleted, "
    "rollback_reason, last_error, delete_old_at_once";

constexpr std::array<std::pair<RenewalStep, std::string_view>, 6> kStepNames{{
    {RenewalStep::Keygen, "keygen"},
    {RenewalStep::Requested, "requested"},
    {RenewalStep::Issued, "issued"},
    {RenewalStep::Stored, "stored"},
    {RenewalStep::Retired, "retired"},
    {RenewalStep::RolledBack, "rolled-back"},
}};

constexpr std::array<std::string_view, 3> kKinds{"renew", "reissue", "enroll"};

[[noreturn]] void failBadInput(const std::string& message, CallSite where = CallSite::current()) {
  throw Error(CKR_ARGUMENTS_BAD, ErrorKind::BadInput, message, where);
}

[[noreturn]] void failFatal(const std::string& message, CallSite where = CallSite::current()) {
  throw Error(CKR_FUNCTION_FAILED, ErrorKind::Fatal, message, where);
}

std::string name(RenewalStep step) {
  return std::string(toString(step));
}

std::string describe(int64_t id) {
  return "renewal " + std::to_string(id);
}

sqlite::Database openCreatingParents(const std::filesystem::path& path) {
  createPrivateDirectories(path.parent_path());
  return sqlite::Database(path.string());
}

RenewalStep stepColumn(const sqlite::Statement& row, int column, int64_t id) {
  const std::string text = row.text(column);
  const std::optional<RenewalStep> step = fromString(text);
  if (!step) {
    failFatal("renewal journal: " + describe(id) + " has an unknown step '" + text + "'");
  }
  return *step;
}

RenewalRecord readRecord(const sqlite::Statement& row) {
  RenewalRecord record;
  record.id = row.integer(0);
  RenewalPlan& plan = record.plan;
  plan.certificateKey = row.text(1);
  plan.tokenSerial = row.text(2);
  plan.tokenLabel = row.text(3);
  plan.oldKeyId = row.blob(4);
  plan.oldCertificateDer = row.blob(5);
  plan.oldLabel = row.text(6);
  plan.newKeyId = row.blob(7);
  plan.pendingLabel = row.text(8);
  plan.keyType = row.text(9);
  plan.profile = row.text(10);
  plan.caName = row.text(11);
  plan.kind = row.text(12);
  plan.feeAcknowledgedKrw = row.optionalInteger(13);
  record.step = stepColumn(row, 14, record.id);
  record.startedAt = row.integer(15);
  record.updatedAt = row.integer(16);
  record.ownerPid = row.integer(17);
  record.issuedCertificateDer = row.blob(18);
  record.oldKeyDeleteAfter = row.optionalInteger(19);
  record.oldKeyDeleted = row.integer(20) != 0;
  record.rollbackReason = row.optionalText(21);
  record.lastError = row.optionalText(22);
  plan.deleteOldAtOnce = row.integer(23) != 0;
  return record;
}

// Empty byte strings are stored as NULL (SQLite binds an empty blob as NULL anyway).
void bindBytes(sqlite::Statement& statement, int index, const std::vector<unsigned char>& bytes) {
  if (bytes.empty()) {
    statement.bindNull(index);
  } else {
    statement.bindBlob(index, bytes);
  }
}

void validatePlan(const RenewalPlan& plan) {
  const std::pair<const char*, bool> required[] = {
      {"certificate key", !plan.certificateKey.empty()},
      {"token serial", !plan.tokenSerial.empty()},
      {"new key CKA_ID", !plan.newKeyId.empty()},
      {"pending label", !plan.pendingLabel.empty()},
      {"key type", !plan.keyType.empty()},
      {"profile", !plan.profile.empty()},
      {"CA name", !plan.caName.empty()},
  };
  for (const auto& [field, present] : required) {
    if (!present) {
      failBadInput(std::string("renewal plan lacks the ") + field);
    }
  }
  bool knownKind = false;
  for (std::string_view kind : kKinds) {
    knownKind = knownKind || plan.kind == kind;
  }
  if (!knownKind) {
    failBadInput("renewal plan has kind '" + plan.kind + "'; expected renew, reissue or enroll");
  }
  if (plan.kind != "enroll" && (plan.oldKeyId.empty() || plan.oldCertificateDer.empty())) {
    failBadInput("a " + plan.kind + " plan needs the old key's CKA_ID and the old certificate");
  }
  if (plan.feeAcknowledgedKrw && *plan.feeAcknowledgedKrw < 0) {
    failBadInput("renewal plan acknowledges a negative fee");
  }
}

// Each step records only its own facts (see StepData).
void validateStepData(int64_t id, RenewalStep to, const StepData& data) {
  const std::string where = describe(id) + " going to " + name(to);
  if ((to == RenewalStep::Issued) == data.issuedCertificateDer.empty()) {
    failBadInput(where + ": the issued certificate is recorded by, and only by, the issued step");
  }
  if (to != RenewalStep::Retired && (data.oldKeyDeleteAfter || data.oldKeyDeleted)) {
    failBadInput(where + ": the old pair's deletion is recorded by the retired step");
  }
  if (data.oldKeyDeleteAfter && data.oldKeyDeleted) {
    failBadInput(where + ": the old pair cannot be both deleted and kept until a date");
  }
  if (to == RenewalStep::RolledBack && data.note.empty()) {
    failBadInput(where + ": rolling back needs a reason");
  }
}

}  // namespace

std::string_view toString(RenewalStep step) noexcept {
  for (const auto& [candidate, text] : kStepNames) {
    if (candidate == step) {
      return text;
    }
  }
  return "unknown";
}

std::optional<RenewalStep> fromString(std::string_view text) noexcept {
  for (const auto& [step, candidate] : kStepNames) {
    if (candidate == text) {
      return step;
    }
  }
  return std::nullopt;
}

bool isTerminal(RenewalStep step) noexcept {
  return step == RenewalStep::Retired || step == RenewalStep::RolledBack;
}

bool isAllowedTransition(RenewalStep from, RenewalStep to) noexcept {
  switch (from) {
    case RenewalStep::Keygen:
      return to == RenewalStep::Requested || to == RenewalStep::RolledBack;
    case RenewalStep::Requested:
      return to == RenewalStep::Issued || to == RenewalStep::RolledBack;
    case RenewalStep::Issued:
      return to == RenewalStep::Stored || to == RenewalStep::RolledBack;
    case RenewalStep::Stored:
      return to == RenewalStep::Retired;  // the new certificate is on the token: no way back
    case RenewalStep::Retired:
    case RenewalStep::RolledBack:
      return false;
  }
  return false;
}

std::string_view toString(RecoveryAction action) noexcept {
  switch (action) {
    case RecoveryAction::None:
      return "none";
    case RecoveryAction::RollBack:
      return "roll back";
    case RecoveryAction::StoreCertificate:
      return "store certificate";
    case RecoveryAction::RetireOld:
      return "retire old";
  }
  return "unknown";
}

RecoveryAction recoveryFor(const RenewalRecord& record) noexcept {
  switch (record.step) {
    case RenewalStep::Keygen:
    case RenewalStep::Requested:
      return RecoveryAction::RollBack;  // nothing the CA issued is known to us
    case RenewalStep::Issued:
      return RecoveryAction::StoreCertificate;
    case RenewalStep::Stored:
      return RecoveryAction::RetireOld;
    case RenewalStep::Retired:
    case RenewalStep::RolledBack:
      return RecoveryAction::None;
  }
  return RecoveryAction::None;
}

Journal::Journal(const std::filesystem::path& path, Clock clock)
    : m_path(path), m_clock(std::move(clock)), m_database(openCreatingParents(path)) {
  migrate();
}

std::filesystem::path Journal::defaultPath() {
  // The XDG base directory spec says relative values are to be ignored.
  if (const char* state = std::getenv("XDG_STATE_HOME"); state != nullptr && state[0] == '/') {
    return std::filesystem::path(state) / "dojang" / "renewal.db";
  }
  if (const char* home = std::getenv("HOME"); home != nullptr && home[0] != '\0') {
    return std::filesystem::path(home) / ".local" / "state" / "dojang" / "renewal.db";
  }
  throw Error(CKR_FUNCTION_FAILED, ErrorKind::BadInput,
              "cannot place the renewal journal: neither XDG_STATE_HOME nor HOME is set");
}

void Journal::migrate() {
  // The Issued certificate is what the CA charged for: it must survive a power cut, not only a
  // crash, which WAL's default NORMAL would not promise.
  m_database.execute("PRAGMA synchronous = FULL");
  sqlite::Transaction transaction(m_database);
  sqlite::Statement readVersion(m_database, "PRAGMA user_version");
  const int64_t version = readVersion.step() ? readVersion.integer(0) : 0;
  if (version > kSchemaVersion) {
    throw Error(CKR_FUNCTION_FAILED, ErrorKind::Unsupported,
                "renewal journal " + m_path.string() + " has schema version " + std::to_string(version) +
                    ", newer than this dojang's " + std::to_string(kSchemaVersion) +
                    "; run a dojang at least as new as the one that wrote it");
  }
  if (version == 1) {
    m_database.execute("ALTER TABLE renewals ADD COLUMN delete_old_at_once INTEGER NOT NULL DEFAULT 0");
  }
  if (version < kSchemaVersion) {
    m_database.execute(kSchema);
    m_database.execute("PRAGMA user_version = " + std::to_string(kSchemaVersion));
  }
  transaction.commit();
}

int64_t Journal::currentTime() const {
  return m_clock ? m_clock() : static_cast<int64_t>(std::time(nullptr));
}

RenewalRecord Journal::begin(const RenewalPlan& plan) {
  validatePlan(plan);
  const int64_t at = currentTime();
  sqlite::Transaction transaction(m_database);
  refuseIfUnfinished(plan.certificateKey);
  sqlite::Statement insert(
      m_database,
      "INSERT INTO renewals (certificate_key, token_serial, token_label, old_key_id, "
      "old_certificate_der, old_label, new_key_id, pending_label, key_type, profile, "
      "ca_name, kind, fee_acknowledged_krw, step, started_at, updated_at, owner_pid, delete_old_at_once) "
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?15, ?16, ?17)");
  insert.bind(1, plan.certificateKey).bind(2, plan.tokenSerial).bind(3, plan.tokenLabel);
  bindBytes(insert, 4, plan.oldKeyId);
  bindBytes(insert, 5, plan.oldCertificateDer);
  insert.bind(6, plan.oldLabel).bindBlob(7, plan.newKeyId).bind(8, plan.pendingLabel).bind(9, plan.keyType);
  insert.bind(10, plan.profile).bind(11, plan.caName).bind(12, plan.kind).bind(13, plan.feeAcknowledgedKrw);
  insert.bind(14, name(RenewalStep::Keygen)).bind(15, at).bind(16, static_cast<int64_t>(getpid()));
  insert.bind(17, static_cast<int64_t>(plan.deleteOldAtOnce ? 1 : 0));
  insert.run();
  const int64_t id = sqlite3_last_insert_rowid(m_database.handle());
  appendEvent(id, RenewalStep::Keygen, at,
              plan.kind + " " + plan.keyType + " from " + plan.caName + " (" + plan.profile + ")");
  transaction.commit();
  return require(id);
}

void Journal::refuseIfUnfinished(const std::string& certificateKey) {
  sqlite::Statement query(m_database, std::string("SELECT id, step, owner_pid FROM renewals ") +
                                          "WHERE certificate_key = ?1 AND " + kUnfinished +
                                          " ORDER BY id LIMIT 1");
  query.bind(1, certificateKey);
  if (!query.step()) {
    return;
  }
  const int64_t id = query.integer(0);
  const std::string existing = describe(id) + " of " + certificateKey + " (at " +
                               name(stepColumn(query, 1, id)) + ", pid " + std::to_string(query.integer(2)) +
                               ")";
  if (RenewalLock::isHeldByThisProcess(m_path, certificateKey)) {
    // We hold the lock, so nobody else is running it: it is ours to recover.
    throw Error(CKR_FUNCTION_FAILED, ErrorKind::Refused,
                existing + " is unfinished; recover it before beginning another");
  }
  if (RenewalLock::isHeld(m_path, certificateKey)) {
    throw Error(CKR_OPERATION_ACTIVE, ErrorKind::Retryable,
                existing + " is running; try again when it has finished");
  }
  throw Error(CKR_FUNCTION_FAILED, ErrorKind::Refused,
              existing + " was interrupted; recovery must run first");
}

RenewalRecord Journal::advance(int64_t id, RenewalStep to, const StepData& data) {
  sqlite::Transaction transaction(m_database);
  const RenewalStep from = require(id).step;
  if (!isAllowedTransition(from, to)) {
    failFatal(describe(id) + ": illegal transition from " + name(from) + " to " + name(to));
  }
  validateStepData(id, to, data);
  const int64_t at = currentTime();
  // Each step only adds its own facts (validateStepData), so the others keep their values.
  sqlite::Statement update(m_database,
                           "UPDATE renewals SET step = ?2, updated_at = ?3, owner_pid = ?4, "
                           "issued_certificate_der = COALESCE(?5, issued_certificate_der), "
                           "old_key_delete_after = COALESCE(?6, old_key_delete_after), "
                           "old_key_deleted = MAX(old_key_deleted, ?7), "
                           "rollback_reason = COALESCE(?8, rollback_reason) WHERE id = ?1");
  update.bind(1, id).bind(2, name(to)).bind(3, at).bind(4, static_cast<int64_t>(getpid()));
  bindBytes(update, 5, data.issuedCertificateDer);
  update.bind(6, data.oldKeyDeleteAfter).bind(7, static_cast<int64_t>(data.oldKeyDeleted ? 1 : 0));
  update.bind(8, to == RenewalStep::RolledBack ? std::optional<std::string>(data.note) : std::nullopt);
  update.run();
  appendEvent(id, to, at, data.note);
  transaction.commit();
  return require(id);
}

void Journal::recordError(int64_t id, const std::string& errorText) {
  sqlite::Transaction transaction(m_database);
  const RenewalStep step = require(id).step;
  const int64_t at = currentTime();
  sqlite::Statement update(m_database, "UPDATE renewals SET last_error = ?2, updated_at = ?3 WHERE id = ?1");
  update.bind(1, id).bind(2, errorText).bind(3, at);
  update.run();
  appendEvent(id, step, at, "error: " + errorText);
  transaction.commit();
}

void Journal::appendEvent(int64_t id, RenewalStep step, int64_t at, const std::string& note) {
  sqlite::Statement insert(m_database,
                           "INSERT INTO renewal_events (renewal_id, step, at, note) VALUES (?1, ?2, ?3, ?4)");
  insert.bind(1, id).bind(2, name(step)).bind(3, at).bind(4, note);
  insert.run();
}

RenewalRecord Journal::require(int64_t id) {
  std::optional<RenewalRecord> record = find(id);
  if (!record) {
    failBadInput("no " + describe(id) + " in the journal");
  }
  return std::move(*record);
}

std::vector<RenewalRecord> Journal::select(const std::string& whereAndOrder,
                                           const std::function<void(sqlite::Statement&)>& bind) {
  std::vector<RenewalRecord> records;
  {
    sqlite::Statement query(m_database,
                            std::string("SELECT ") + kRenewalColumns + " FROM renewals " + whereAndOrder);
    bind(query);
    while (query.step()) {
      records.push_back(readRecord(query));
    }
  }
  for (RenewalRecord& record : records) {
    sqlite::Statement events(
        m_database, "SELECT id, step, at, note FROM renewal_events WHERE renewal_id = ?1 ORDER BY id");
    events.bind(1, record.id);
    while (events.step()) {
      record.events.push_back(
          {events.integer(0), stepColumn(events, 1, record.id), events.integer(2), events.text(3)});
    }
  }
  return records;
}

std::optional<RenewalRecord> Journal::find(int64_t id) {
  std::vector<RenewalRecord> records =
      select("WHERE id = ?1", [&](sqlite::Statement& query) { query.bind(1, id); });
  if (records.empty()) {
    return std::nullopt;
  }
  return std::move(records.front());
}

std::optional<RenewalRecord> Journal::latestFor(const std::string& certificateKey) {
  std::vector<RenewalRecord> records =
      select("WHERE certificate_key = ?1 ORDER BY id DESC LIMIT 1",
             [&](sqlite::Statement& query) { query.bind(1, certificateKey); });
  if (records.empty()) {
    return std::nullopt;
  }
  return std::move(records.front());
}

std::optional<RenewalRecord> Journal::finishedRenewalThatInstalled(const std::string& tokenSerial,
                                                                   const std::vector<unsigned char>& keyId) {
  std::vector<RenewalRecord> records =
      select("WHERE token_serial = ?1 AND new_key_id = ?2 AND step = 'retired' ORDER BY id DESC LIMIT 1",
             [&](sqlite::Statement& query) { query.bind(1, tokenSerial).bindBlob(2, keyId); });
  if (records.empty()) {
    return std::nullopt;
  }
  return std::move(records.front());
}

std::vector<RenewalRecord> Journal::unfinished() {
  return select(std::string("WHERE ") + kUnfinished + " ORDER BY id", [](sqlite::Statement&) {});
}

std::vector<RenewalRecord> Journal::history(std::size_t limit) {
  const auto boundedLimit = static_cast<int64_t>(
      std::min<std::size_t>(limit, static_cast<std::size_t>(std::numeric_limits<int64_t>::max())));
  return select("ORDER BY id DESC LIMIT ?1", [&](sqlite::Statement& query) { query.bind(1, boundedLimit); });
}

std::vector<RenewalRecord> Journal::dueForOldKeyDeletion(int64_t now) {
  return select(
      "WHERE step = 'retired' AND old_key_deleted = 0 AND old_key_delete_after IS NOT NULL "
      "AND old_key_delete_after <= ?1 ORDER BY old_key_delete_after, id",
      [&](sqlite::Statement& query) { query.bind(1, now); });
}

bool Journal::markOldKeyDeleted(int64_t id) {
  sqlite::Transaction transaction(m_database);
  const RenewalRecord record = require(id);
  if (record.step != RenewalStep::Retired) {
    failFatal(describe(id) + " is at " + name(record.step) +
              "; only a retired renewal's old pair is deleted");
  }
  if (record.oldKeyDeleted) {
    return false;
  }
  const int64_t at = currentTime();
  sqlite::Statement update(m_database,
                           "UPDATE renewals SET old_key_deleted = 1, updated_at = ?2 WHERE id = ?1");
  update.bind(1, id).bind(2, at);
  update.run();
  appendEvent(id, RenewalStep::Retired, at, "old key deleted");
  transaction.commit();
  return true;
}

}  // namespace dojang::renewal
