#include "src/renewal/journal/scheduler_state.h"

#include "src/renewal/journal/private_directory.h"

namespace dojang::renewal {

namespace {

// Its own table, created if missing: the journal's schema version is not the scheduler's business.
constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS scheduler_state (
  certificate_key TEXT PRIMARY KEY,
  label TEXT NOT NULL,
  token_label TEXT NOT NULL,
  token_serial TEXT NOT NULL,
  days_left INTEGER NOT NULL,
  not_after INTEGER NOT NULL,
  state TEXT NOT NULL,
  detail TEXT NOT NULL,
  notified_days INTEGER,
  retry_at INTEGER,
  updated_at INTEGER NOT NULL
);
)sql";

constexpr const char* kColumns =
    "certificate_key, label, token_label, token_serial, days_left, not_after, state, detail, "
    "notified_days, retry_at, updated_at";

sqlite::Database openCreating(const std::filesystem::path& path) {
  createPrivateDirectories(path.parent_path());
  return sqlite::Database(path.string());
}

std::vector<SchedulerStateRow> selectAll(sqlite::Database& database) {
  sqlite::Statement select(database,
                           std::string("SELECT ") + kColumns +
                               " FROM scheduler_state ORDER BY token_label, label, certificate_key");
  std::vector<SchedulerStateRow> rows;
  while (select.step()) {
    SchedulerStateRow row;
    row.certificateKey = select.text(0);
    row.label = select.text(1);
    row.tokenLabel = select.text(2);
    row.tokenSerial = select.text(3);
    row.daysLeft = select.integer(4);
    row.notAfter = select.integer(5);
    row.state = select.text(6);
    row.detail = select.text(7);
    row.notifiedDays = select.optionalInteger(8);
    row.retryAt = select.optionalInteger(9);
    row.updatedAt = select.integer(10);
    rows.push_back(std::move(row));
  }
  return rows;
}

}  // namespace

SchedulerState::SchedulerState(const std::filesystem::path& databasePath)
    : m_database(openCreating(databasePath)) {
  m_database.execute(kSchema);
}

std::optional<std::vector<SchedulerStateRow>> SchedulerState::readIfPresent(
    const std::filesystem::path& databasePath) {
  std::error_code ignored;
  if (!std::filesystem::exists(databasePath, ignored)) {
    return std::nullopt;
  }
  sqlite::Database database(databasePath.string());
  sqlite::Statement table(database,
                          "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'scheduler_state'");
  if (!table.step()) {
    return std::nullopt;
  }
  return selectAll(database);
}

void SchedulerState::put(const SchedulerStateRow& row) {
  sqlite::Statement upsert(m_database, std::string("INSERT OR REPLACE INTO scheduler_state (") + kColumns +
                                           ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)");
  upsert.bind(1, row.certificateKey).bind(2, row.label).bind(3, row.tokenLabel).bind(4, row.tokenSerial);
  upsert.bind(5, row.daysLeft).bind(6, row.notAfter).bind(7, row.state).bind(8, row.detail);
  upsert.bind(9, row.notifiedDays).bind(10, row.retryAt).bind(11, row.updatedAt);
  upsert.run();
}

void SchedulerState::remove(const std::string& certificateKey) {
  sqlite::Statement erase(m_database, "DELETE FROM scheduler_state WHERE certificate_key = ?1");
  erase.bind(1, certificateKey);
  erase.run();
}

std::vector<SchedulerStateRow> SchedulerState::all() {
  return selectAll(m_database);
}

}  // namespace dojang::renewal
