// dojangd's renewal scheduler (docs/renewal.md): checks every certificate on every token at
// start-up, when a token arrives and every check_interval_seconds; sends notices (log, desktop,
// `dojang status`) at the notify_days thresholds; and renews the certificates that
// [[renewal.auto]] opts in, within their fee ceiling, by running `dojang renew --auto` as a child,
// one at a time. Its state per certificate goes to the journal's database (scheduler_state.h).
// Every failure here is logged and shown, never fatal to dojangd.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>

#include "src/ca/profiles/profile.h"
#include "src/daemon/config.h"
#include "src/daemon/scheduler/renew_child.h"
#include "src/daemon/scheduler/renewal_decision.h"
#include "src/daemon/scheduler/token_certificates.h"
#include "src/daemon/slot_table.h"
#include "src/renewal/journal/journal.h"
#include "src/renewal/journal/scheduler_state.h"

namespace dojang::daemon {

struct SchedulerSettings {
  RenewalSchedule schedule;
  std::string socketPath;                  // this daemon's, for the child
  std::filesystem::path databasePath;      // the renewal journal (Journal::defaultPath())
  std::string profilesPath;                // the CA profile catalogue
  std::chrono::minutes childPatience{10};  // a renewal running longer is ended and retried
};

// The profile catalogue dojangd reads: installed, else the source tree's (as the CLI does).
[[nodiscard]] std::string defaultProfilesPath();

class RenewalScheduler final {
 public:
  // Starts the scheduler's thread; the first check runs at once.
  RenewalScheduler(SlotTable& slots, SchedulerSettings settings);
  // Stops the thread; a renewal still running is ended (the journal makes that safe) and reaped.
  ~RenewalScheduler();
  RenewalScheduler(const RenewalScheduler&) = delete;
  RenewalScheduler& operator=(const RenewalScheduler&) = delete;

 private:
  // What the scheduler remembers about one certificate between checks.
  struct Entry {
    std::optional<int> notifiedDays;
    int failures = 0;
    std::optional<SystemTime> lastFailure;
    bool stopped = false;
    std::string lastError;
  };
  struct Running {
    std::unique_ptr<RenewChild> child;
    std::string certificateKey;
    std::string label;
    std::string tokenLabel;
    bool housekeeping = false;  // `dojang renew --recover`: deletes retired pairs that are due
  };

  void run();
  void check();
  void checkCertificate(const TokenCertificate& certificate, SystemTime now, renewal::Journal& journal,
                        renewal::SchedulerState& store, std::set<std::string>& seen);
  // Starts `dojang renew --auto` for the certificate; the state to show (renewing, needs PIN, error).
  std::pair<std::string, std::string> startRenewal(const TokenCertificate& certificate,
                                                   const std::string& certificateKey, long long feeKrw);
  void finishRenewal(int status);
  // Retired pairs past retire_days on a token that is present: deleted by a `--recover` child, so
  // that they go on time even when no renewal runs.
  void startHousekeeping(renewal::Journal& journal, const std::set<std::string>& presentSerials,
                         SystemTime now);
  void finishHousekeeping(int status);
  void notice(const TokenCertificate& certificate, long long daysLeft, const std::string& typeLabel,
              const std::string& reason);
  [[nodiscard]] const AutoRenewal* ruleFor(const std::string& label, const ca::Profile* profile) const;
  [[nodiscard]] Entry& entryFor(const std::string& certificateKey, renewal::SchedulerState& store);

  SlotTable& m_slots;
  const SchedulerSettings m_settings;
  std::optional<ca::ProfileCatalog> m_catalog;
  std::map<std::string, Entry> m_entries;
  std::optional<Running> m_running;  // at most one renewal at a time
  std::optional<SystemTime> m_nextRetry;
  std::optional<SystemTime> m_housekeepingNotBefore;  // after a failed one, not again at once

  std::mutex m_mutex;
  std::condition_variable m_wake;
  bool m_stopping = false;
  std::thread m_thread;  // last: started once everything above exists
};

}  // namespace dojang::daemon
