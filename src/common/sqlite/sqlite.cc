#include "src/common/sqlite/sqlite.h"

#include <utility>

#include "src/common/errors/foreign_errors.h"

namespace dojang::sqlite {
namespace {

[[noreturn]] void throwSqlite(sqlite3* database, const std::string& what,
                              CallSite where = CallSite::current()) {
  throw sqliteError(database, what, where);
}

}  // namespace

Database::Database(const std::string& path) {
  int status = sqlite3_open_v2(path.c_str(), &m_handle,
                               SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                               nullptr);
  if (status != SQLITE_OK) {
    const Error error = sqliteError(m_handle, "opening " + path);
    if (m_handle != nullptr) {
      sqlite3_close(m_handle);
      m_handle = nullptr;
    }
    throw error;
  }
  sqlite3_busy_timeout(m_handle, 5000);
  execute("PRAGMA foreign_keys = ON");
  execute("PRAGMA journal_mode = WAL");
}

Database::~Database() {
  if (m_handle != nullptr) {
    sqlite3_close(m_handle);
  }
}

Database::Database(Database&& other) noexcept : m_handle(std::exchange(other.m_handle, nullptr)) {}

Database& Database::operator=(Database&& other) noexcept {
  if (this != &other) {
    if (m_handle != nullptr) {
      sqlite3_close(m_handle);
    }
    m_handle = std::exchange(other.m_handle, nullptr);
  }
  return *this;
}

void Database::execute(const std::string& sql) {
  char* errorText = nullptr;
  if (sqlite3_exec(m_handle, sql.c_str(), nullptr, nullptr, &errorText) != SQLITE_OK) {
    const std::string message = errorText != nullptr ? errorText : "unknown error";
    sqlite3_free(errorText);
    throw sqliteError(nullptr, message + " in: " + sql);
  }
}

int64_t Database::changes() const noexcept { return sqlite3_changes64(m_handle); }

Statement::Statement(Database& database, std::string_view sql) : m_database(database.handle()) {
  if (sqlite3_prepare_v2(m_database, sql.data(), static_cast<int>(sql.size()), &m_statement,
                         nullptr) != SQLITE_OK) {
    throwSqlite(m_database, "preparing " + std::string(sql));
  }
}

Statement::~Statement() { sqlite3_finalize(m_statement); }

Statement::Statement(Statement&& other) noexcept
    : m_database(other.m_database), m_statement(std::exchange(other.m_statement, nullptr)) {}

Statement& Statement::operator=(Statement&& other) noexcept {
  if (this != &other) {
    sqlite3_finalize(m_statement);
    m_database = other.m_database;
    m_statement = std::exchange(other.m_statement, nullptr);
  }
  return *this;
}

Statement& Statement::bind(int index, const std::string& text) {
  if (sqlite3_bind_text(m_statement, index, text.data(), static_cast<int>(text.size()),
                        SQLITE_TRANSIENT) != SQLITE_OK) {
    throwSqlite(m_database, "binding text");
  }
  return *this;
}

Statement& Statement::bind(int index, int64_t value) {
  if (sqlite3_bind_int64(m_statement, index, value) != SQLITE_OK) {
    throwSqlite(m_database, "binding integer");
  }
  return *this;
}

Statement& Statement::bindBlob(int index, const std::vector<unsigned char>& bytes) {
  if (sqlite3_bind_blob(m_statement, index, bytes.data(), static_cast<int>(bytes.size()),
                        SQLITE_TRANSIENT) != SQLITE_OK) {
    throwSqlite(m_database, "binding blob");
  }
  return *this;
}

Statement& Statement::bindNull(int index) {
  if (sqlite3_bind_null(m_statement, index) != SQLITE_OK) {
    throwSqlite(m_database, "binding null");
  }
  return *this;
}

Statement& Statement::bind(int index, const std::optional<std::string>& text) {
  return text ? bind(index, *text) : bindNull(index);
}

Statement& Statement::bind(int index, const std::optional<int64_t>& value) {
  return value ? bind(index, *value) : bindNull(index);
}

bool Statement::step() {
  int status = sqlite3_step(m_statement);
  if (status == SQLITE_ROW) {
    return true;
  }
  if (status == SQLITE_DONE) {
    return false;
  }
  throwSqlite(m_database, "executing " + std::string(sqlite3_sql(m_statement)));
}

void Statement::run() {
  while (step()) {
  }
}

bool Statement::isNull(int column) const {
  return sqlite3_column_type(m_statement, column) == SQLITE_NULL;
}

std::string Statement::text(int column) const {
  const unsigned char* text = sqlite3_column_text(m_statement, column);
  int length = sqlite3_column_bytes(m_statement, column);
  return text == nullptr ? std::string()
                         : std::string(reinterpret_cast<const char*>(text), static_cast<size_t>(length));
}

int64_t Statement::integer(int column) const { return sqlite3_column_int64(m_statement, column); }

std::vector<unsigned char> Statement::blob(int column) const {
  const auto* bytes = static_cast<const unsigned char*>(sqlite3_column_blob(m_statement, column));
  int length = sqlite3_column_bytes(m_statement, column);
  return bytes == nullptr ? std::vector<unsigned char>()
                          : std::vector<unsigned char>(bytes, bytes + length);
}

std::optional<std::string> Statement::optionalText(int column) const {
  return isNull(column) ? std::nullopt : std::optional<std::string>(text(column));
}

std::optional<int64_t> Statement::optionalInteger(int column) const {
  return isNull(column) ? std::nullopt : std::optional<int64_t>(integer(column));
}

Transaction::Transaction(Database& database) : m_database(database) {
  m_database.execute("BEGIN IMMEDIATE");
}

Transaction::~Transaction() {
  if (!m_done) {
    try {
      m_database.execute("ROLLBACK");
    } catch (...) {
      // Nothing sensible to do in a destructor; SQLite rolls back on close anyway.
    }
  }
}

void Transaction::commit() {
  m_database.execute("COMMIT");
  m_done = true;
}

}  // namespace dojang::sqlite
