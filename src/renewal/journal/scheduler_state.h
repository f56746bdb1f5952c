// dojangd's renewal scheduler's view of each certificate, kept in a table of the renewal journal's
// database (Journal::defaultPath()), for `dojang status` to show.
//
// Why a table and not the wire protocol: `dojang status` asks dojangd over the wire, and carrying
// the scheduler's state there would change DaemonStatusReply (src/common/wire/calls.h), which
// needs a protocol version bump for every module and daemon. The state belongs beside the journal
// anyway: both say what happened to a certificate's renewal, the file is the user's own (mode 0700
// directory), and `dojang status` can show it even while dojangd is stopped.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "src/common/sqlite/sqlite.h"

namespace dojang::renewal {

struct SchedulerStateRow final {
  std::string certificateKey;  // "<token serial>/<CKA_ID hex>", as the journal names it
  std::string label;
  std::string tokenLabel;
  std::string tokenSerial;
  int64_t daysLeft = 0;
  int64_t notAfter = 0;  // Unix seconds
  // For people: "ok", "notified 30 days", "renewing", "renewed", "waiting for token X",
  // "needs PIN", "retrying at TIME", "error", "expired".
  std::string state;
  std::string detail;                   // why, or the error text
  std::optional<int64_t> notifiedDays;  // the smallest notice threshold sent
  std::optional<int64_t> retryAt;       // Unix seconds
  int64_t updatedAt = 0;

  friend bool operator==(const SchedulerStateRow&, const SchedulerStateRow&) = default;
};

class SchedulerState final {
 public:
  // Opens the database, creating it (and its 0700 parents) and the table when missing.
  explicit SchedulerState(const std::filesystem::path& databasePath);
  // For readers that must not create anything: nullopt when the file or the table is missing.
  [[nodiscard]] static std::optional<std::vector<SchedulerStateRow>> readIfPresent(
      const std::filesystem::path& databasePath);

  void put(const SchedulerStateRow& row);
  void remove(const std::string& certificateKey);
  [[nodiscard]] std::vector<SchedulerStateRow> all();

 private:
  sqlite::Database m_database;
};

}  // namespace dojang::renewal
