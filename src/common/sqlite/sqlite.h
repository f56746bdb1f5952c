// Move-only owners for a SQLite connection, its prepared statements and transactions. Every
// sqlite3_* failure becomes a dojang::Error carrying SQLite's message.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace dojang::sqlite {

class Database final {
 public:
  // Opens (creating if needed) the file; busy timeout so CLI commands can run beside `serve`.
  explicit Database(const std::string& path);
  ~Database();
  Database(Database&& other) noexcept;
  Database& operator=(Database&& other) noexcept;
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  void execute(const std::string& sql);
  [[nodiscard]] sqlite3* handle() const noexcept { return m_handle; }
  [[nodiscard]] int64_t changes() const noexcept;

 private:
  sqlite3* m_handle = nullptr;
};

class Statement final {
 public:
  Statement(Database& database, std::string_view sql);
  ~Statement();
  Statement(Statement&& other) noexcept;
  Statement& operator=(Statement&& other) noexcept;
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  // Parameters are 1-based, as in SQLite.
  Statement& bind(int index, const std::string& text);
  Statement& bind(int index, int64_t value);
  Statement& bindBlob(int index, const std::vector<unsigned char>& bytes);
  Statement& bindNull(int index);
  Statement& bind(int index, const std::optional<std::string>& text);
  Statement& bind(int index, const std::optional<int64_t>& value);

  // True while a row is available.
  bool step();
  // Runs a statement that returns no rows.
  void run();

  [[nodiscard]] bool isNull(int column) const;
  [[nodiscard]] std::string text(int column) const;
  [[nodiscard]] int64_t integer(int column) const;
  [[nodiscard]] std::vector<unsigned char> blob(int column) const;
  [[nodiscard]] std::optional<std::string> optionalText(int column) const;
  [[nodiscard]] std::optional<int64_t> optionalInteger(int column) const;

 private:
  sqlite3* m_database = nullptr;
  sqlite3_stmt* m_statement = nullptr;
};

// BEGIN IMMEDIATE on construction; ROLLBACK on destruction unless commit() ran.
class Transaction final {
 public:
  explicit Transaction(Database& database);
  ~Transaction();
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;

  void commit();

 private:
  Database& m_database;
  bool m_done = false;
};

}  // namespace dojang::sqlite
