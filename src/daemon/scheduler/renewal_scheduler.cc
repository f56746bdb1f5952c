#include "src/daemon/scheduler/renewal_scheduler.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "src/common/cryptoki/hex_text.h"
#include "src/common/errors/error.h"
#include "src/daemon/log.h"
#include "src/daemon/scheduler/desktop_notifier.h"
#include "src/pki/certificate_summary.h"

namespace dojang::daemon {

namespace {

using std::chrono::system_clock;

constexpr std::chrono::milliseconds kTick{250};  // how often a running child and token events are looked at

int64_t unixSeconds(SystemTime time) {
  return std::chrono::duration_cast<std::chrono::seconds>(time.time_since_epoch()).count();
}

// RFC 7512 percent-encoding for a pkcs11: URI value.
std::string percentEncoded(const std::vector<std::uint8_t>& bytes) {
  static constexpr char kDigits[] = "0123456789ABCDEF";
  std::string out;
  for (const auto byte : bytes) {
    if (std::isalnum(byte) != 0 || byte == '-' || byte == '.' || byte == '_') {
      out += static_cast<char>(byte);
    } else {
      out += '%';
      out += kDigits[byte >> 4];
      out += kDigits[byte & 0x0f];
    }
  }
  return out;
}

std::string certificateKeyOf(const TokenCertificate& certificate) {
  return certificate.tokenSerial + "/" + hexText(certificate.id);
}

// The PIN source for automatic renewals: a file only its owner can read, until dojangd can ask
// the person itself. The problem to show, or nullopt when it may be used.
std::optional<std::string> pinFileProblem(const std::optional<std::string>& path) {
  if (!path) {
    return "no pin_file in [renewal] of dojangd.toml";
  }
  struct stat status {};
  if (::stat(path->c_str(), &status) != 0) {
    return "the PIN file " + *path + " cannot be read: " + std::strerror(errno);
  }
  if (!S_ISREG(status.st_mode)) {
    return "the PIN file " + *path + " is not a regular file";
  }
  if (status.st_uid != ::getuid() || (status.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(status.st_mode & 07777));
    return "the PIN file " + *path + " (mode " + mode +
           ") is refused: it must be yours and mode 0600 (chmod 600)";
  }
  return std::nullopt;
}

// The child's error, from its --json report on stderr ({"error": ..., "retryable": ...}).
struct ChildFailure {
  std::string message;
  bool retryable = false;
};

ChildFailure failureOf(int status, const std::string& standardError) {
  ChildFailure failure;
  const auto brace = standardError.find('{');
  if (brace != std::string::npos) {
    const auto report = nlohmann::json::parse(standardError.substr(brace), nullptr, false);
    if (report.is_object() && report.contains("error") && report["error"].is_string()) {
      failure.message = report["error"].get<std::string>();
      failure.retryable = report.value("retryable", false) || status == 3;
    }
  }
  if (failure.message.empty()) {
    failure.message = standardError.empty() ? "dojang renew ended with status " + std::to_string(status)
                                            : standardError.substr(0, 500);
    // Killed (the journal lets it start over), or dojangd unreachable (3): try again later.
    failure.retryable = status >= 128 || status < 0 || status == 3;
  }
  return failure;
}

}  // namespace

std::string defaultProfilesPath() {
  for (const char* candidate : {DOJANG_PROFILES_INSTALLED, DOJANG_PROFILES_SOURCE}) {
    if (std::ifstream(candidate).good()) {
      return candidate;
    }
  }
  return DOJANG_PROFILES_INSTALLED;
}

RenewalScheduler::RenewalScheduler(SlotTable& slots, SchedulerSettings settings)
    : m_slots(slots), m_settings(std::move(settings)), m_thread([this] { run(); }) {}

RenewalScheduler::~RenewalScheduler() {
  {
    std::lock_guard lock(m_mutex);
    m_stopping = true;
  }
  m_wake.notify_all();
  m_thread.join();
  if (m_running) {
    logInfo("renewal of \"" + m_running->label + "\" interrupted by shutdown; the journal resumes it later");
  }
}

void RenewalScheduler::run() {
  std::uint64_t cursor = m_slots.eventCursor();
  auto nextCheck = std::chrono::steady_clock::now();
  std::unique_lock lock(m_mutex);
  while (!m_stopping) {
    lock.unlock();
    try {
      if (m_running) {
        if (const auto status = m_running->child->poll()) {
          m_running->housekeeping ? finishHousekeeping(*status) : finishRenewal(*status);
          nextCheck = std::chrono::steady_clock::now();
        } else if (m_running->child->age() > m_settings.childPatience) {
          logWarning("renewal of \"" + m_running->label + "\" took too long; ended, to be retried");
          m_running->child.reset();  // ends and reaps it
          m_running->housekeeping ? finishHousekeeping(128 + SIGKILL) : finishRenewal(128 + SIGKILL);
        }
      }
      bool tokenEvent = false;
      while (m_slots.nextEvent(cursor, std::chrono::milliseconds(0))) {
        tokenEvent = true;
      }
      const auto now = std::chrono::steady_clock::now();
      if (tokenEvent || now >= nextCheck) {
        m_nextRetry.reset();
        check();
        nextCheck = std::chrono::steady_clock::now() + m_settings.schedule.checkInterval;
        if (m_nextRetry) {
          const auto untilRetry = *m_nextRetry - system_clock::now();
          nextCheck = std::min(nextCheck, std::chrono::steady_clock::now() +
                                              std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                                  std::max(untilRetry, system_clock::duration::zero())));
        }
      }
    } catch (const std::exception& error) {
      logError(std::string("renewal scheduler: ") + error.what());
      nextCheck = std::chrono::steady_clock::now() + m_settings.schedule.checkInterval;
    }
    lock.lock();
    m_wake.wait_for(lock, kTick, [this] { return m_stopping; });
  }
  lock.unlock();
  m_running.reset();  // ends a renewal still running, and reaps it
}

void RenewalScheduler::check() {
  if (!m_catalog) {
    try {
      m_catalog = ca::loadProfiles(m_settings.profilesPath);
    } catch (const std::exception& error) {
      logWarning("renewal scheduler: no CA profiles (" + std::string(error.what()) +
                 "); fees and windows are unknown, certificates are only noticed");
      m_catalog = ca::ProfileCatalog{};
    }
  }
  const auto now = system_clock::now();
  const auto found = readTokenCertificates(m_slots);
  for (const auto& problem : found.problems) {
    logDebug("renewal scheduler: " + problem);
  }
  if (found.certificates.empty() && !std::filesystem::exists(m_settings.databasePath)) {
    return;  // nothing to say, and no reason to create the user's state file
  }
  renewal::Journal journal(m_settings.databasePath);
  renewal::SchedulerState store(m_settings.databasePath);
  std::set<std::string> seen;
  for (const auto& certificate : found.certificates) {
    try {
      checkCertificate(certificate, now, journal, store, seen);
    } catch (const std::exception& error) {
      logError("renewal scheduler: certificate \"" + certificate.label + "\": " + error.what());
    }
  }
  std::set<std::string> presentSerials;
  for (const auto& token : found.tokens) {
    presentSerials.insert(token.serial);
  }
  if (!m_running) {
    startHousekeeping(journal, presentSerials, now);
  }
  const auto window = std::chrono::hours(24) * m_catalog->renewalWindowDays;
  for (auto row : store.all()) {
    if (seen.contains(row.certificateKey)) {
      continue;
    }
    if (presentSerials.contains(row.tokenSerial)) {
      store.remove(row.certificateKey);  // the certificate is gone from its token
      m_entries.erase(row.certificateKey);
      continue;
    }
    // Its token is away: a renewal that is due waits for it, and says so.
    const SystemTime notAfter{std::chrono::seconds(row.notAfter)};
    if (now >= notAfter - window && now < notAfter && row.state != "renewed") {
      const std::string waiting = "waiting for token " + row.tokenLabel;
      if (row.state != waiting) {
        row.detail = "was: " + row.state + (row.detail.empty() ? "" : " (" + row.detail + ")");
        row.state = waiting;
      }
      row.daysLeft = daysLeft(now, notAfter);
      row.updatedAt = unixSeconds(now);
      store.put(row);
    }
  }
}

RenewalScheduler::Entry& RenewalScheduler::entryFor(const std::string& certificateKey,
                                                    renewal::SchedulerState& store) {
  auto [at, inserted] = m_entries.try_emplace(certificateKey);
  if (inserted) {
    // Notices already sent survive a restart of dojangd: they are not sent twice.
    for (const auto& row : store.all()) {
      if (row.certificateKey == certificateKey && row.notifiedDays) {
        at->second.notifiedDays = static_cast<int>(*row.notifiedDays);
      }
    }
  }
  return at->second;
}

const AutoRenewal* RenewalScheduler::ruleFor(const std::string& label, const ca::Profile* profile) const {
  const AutoRenewal* byProfile = nullptr;
  for (const auto& rule : m_settings.schedule.automatic) {
    if (!rule.certificate.empty() && rule.certificate == label) {
      return &rule;  // a rule naming the certificate wins over its profile's
    }
    if (byProfile == nullptr && profile != nullptr && !rule.profile.empty() && rule.profile == profile->id) {
      byProfile = &rule;
    }
  }
  return byProfile;
}

void RenewalScheduler::checkCertificate(const TokenCertificate& certificate, SystemTime now,
                                        renewal::Journal& journal, renewal::SchedulerState& store,
                                        std::set<std::string>& seen) {
  pki::CertificateSummary summary;
  try {
    summary = pki::summarizeCertificate(certificate.der, now);
  } catch (const Error&) {
    return;  // not X.509: nothing to renew
  }
  const std::string key = certificateKeyOf(certificate);
  seen.insert(key);
  const ca::Profile* profile = nullptr;
  for (const auto& candidate : m_catalog->profiles) {
    if (!summary.policyOid.empty() && candidate.policyOid == summary.policyOid) {
      profile = &candidate;
      break;
    }
  }
  const std::string typeLabel = summary.koreanPolicy ? pki::koreanLabel(*summary.koreanPolicy)
                                : profile != nullptr ? profile->brand + " " + profile->type
                                                     : "certificate";
  renewal::SchedulerStateRow row;
  row.certificateKey = key;
  row.label = certificate.label;
  row.tokenLabel = certificate.tokenLabel;
  row.tokenSerial = certificate.tokenSerial;
  row.daysLeft = daysLeft(now, summary.notAfterTime);
  row.notAfter = unixSeconds(summary.notAfterTime);
  row.updatedAt = unixSeconds(now);
  Entry& entry = entryFor(key, store);

  // Renewed already: the old certificate stays on the token (relabelled) until it is retired.
  const auto latest = journal.latestFor(key);
  if (latest && latest->step == renewal::RenewalStep::Retired && latest->plan.kind != "enroll") {
    row.state = "renewed";
    row.detail = "journal #" + std::to_string(latest->id);
    row.notifiedDays = entry.notifiedDays;
    store.put(row);
    return;
  }
  if (m_running && m_running->certificateKey == key) {
    row.state = "renewing";
    row.notifiedDays = entry.notifiedDays;
    store.put(row);
    return;
  }

  const AutoRenewal* rule = ruleFor(certificate.label, profile);
  DecisionInput input;
  input.now = now;
  input.notBefore = summary.notBeforeTime;
  input.notAfter = summary.notAfterTime;
  input.windowOpens = summary.notAfterTime - std::chrono::hours(24) * m_catalog->renewalWindowDays;
  input.notifyDays = m_settings.schedule.notifyDays;
  input.notifiedDays = entry.notifiedDays;
  input.automatic = rule != nullptr;
  if (profile != nullptr) {
    input.feeKrw = profile->feeKrw;
  }
  input.maxFeeKrw = rule != nullptr ? rule->maxFeeKrw : 0;
  input.failures = entry.failures;
  input.lastFailure = entry.lastFailure;
  input.stopped = entry.stopped;
  input.retry = {m_settings.schedule.retryInitial, m_settings.schedule.retryMax};
  if (const auto installer = journal.finishedRenewalThatInstalled(certificate.tokenSerial, certificate.id)) {
    input.installedByRenewalAt = SystemTime{std::chrono::seconds(installer->updatedAt)};
  }
  const auto decision = decide(input);

  row.detail = decision.reason;
  bool renewing = false;
  switch (decision.action) {
    case Action::Renew:
      if (m_running) {
        row.state = "queued";
        row.detail = m_running->housekeeping ? "after the deletion of retired pairs"
                                             : "after the renewal of \"" + m_running->label + "\"";
        m_nextRetry = now;  // look again as soon as that one ends
      } else {
        std::tie(row.state, row.detail) = startRenewal(certificate, key, input.feeKrw.value_or(0));
        renewing = row.state == "renewing";
      }
      break;
    case Action::RetryLater:
      row.state = "retrying at " + pki::formatIso8601Utc(*decision.retryAt);
      row.detail = entry.lastError;
      row.retryAt = unixSeconds(*decision.retryAt);
      if (!m_nextRetry || *decision.retryAt < *m_nextRetry) {
        m_nextRetry = decision.retryAt;
      }
      break;
    case Action::Stopped:
      row.state = "error";
      row.detail = entry.lastError;
      break;
    case Action::FeeTooHigh:
    case Action::Hold:
    case Action::None:
      row.state = now >= summary.notAfterTime ? "expired" : "ok";
      break;
  }
  if (decision.notifyDays && !renewing) {
    notice(certificate, row.daysLeft, typeLabel,
           decision.action == Action::Renew || decision.action == Action::Stopped ? row.detail
                                                                                  : decision.reason);
    entry.notifiedDays = decision.notifyDays;
  }
  if (entry.notifiedDays && (row.state == "ok" || row.state == "expired")) {
    row.state =
        now >= summary.notAfterTime ? "expired" : "notified " + std::to_string(*entry.notifiedDays) + " days";
  }
  row.notifiedDays = entry.notifiedDays;
  store.put(row);
}

std::pair<std::string, std::string> RenewalScheduler::startRenewal(const TokenCertificate& certificate,
                                                                   const std::string& certificateKey,
                                                                   long long feeKrw) {
  if (const auto problem = pinFileProblem(m_settings.schedule.pinFile)) {
    logWarning("automatic renewal of \"" + certificate.label + "\" needs a PIN: " + *problem);
    return {"needs PIN", *problem};
  }
  const auto program = findDojangCli(m_settings.schedule.dojangCli);
  if (!program) {
    const std::string problem =
        m_settings.schedule.dojangCli
            ? "dojang_cli = " + *m_settings.schedule.dojangCli + " is not an executable"
            : "the dojang command was not found beside dojangd nor in " DOJANG_BINDIR;
    logError("automatic renewal of \"" + certificate.label + "\": " + problem);
    return {"error", problem};
  }
  // The certificate by token serial and CKA_ID: exactly the one checked here, whatever its label.
  std::vector<std::string> arguments = {
      "renew",
      "--auto",
      "--json",
      "pkcs11:serial=" +
          percentEncoded(
              std::vector<std::uint8_t>(certificate.tokenSerial.begin(), certificate.tokenSerial.end())) +
          ";id=" + percentEncoded(certificate.id),
      "--pin-file",
      *m_settings.schedule.pinFile,
      "--journal",
      m_settings.databasePath.string()};
  if (feeKrw > 0) {
    arguments.insert(arguments.end(), {"--accept-fee", std::to_string(feeKrw)});
  }
  try {
    Running running;
    running.child = std::make_unique<RenewChild>(*program, arguments, m_settings.socketPath);
    running.certificateKey = certificateKey;
    running.label = certificate.label;
    running.tokenLabel = certificate.tokenLabel;
    m_running = std::move(running);
  } catch (const std::exception& error) {
    logError("automatic renewal of \"" + certificate.label + "\": " + error.what());
    return {"error", error.what()};
  }
  logInfo("renewing \"" + certificate.label + "\" on token \"" + certificate.tokenLabel +
          "\" automatically (" + *program + " renew --auto)");
  return {"renewing", "dojang renew --auto"};
}

void RenewalScheduler::startHousekeeping(renewal::Journal& journal,
                                         const std::set<std::string>& presentSerials, SystemTime now) {
  if (m_housekeepingNotBefore && now < *m_housekeepingNotBefore) {
    return;
  }
  const auto due = journal.dueForOldKeyDeletion(unixSeconds(now));
  const auto here = std::find_if(due.begin(), due.end(), [&](const renewal::RenewalRecord& record) {
    return presentSerials.contains(record.plan.tokenSerial);
  });
  if (here == due.end()) {
    return;
  }
  const auto program = findDojangCli(m_settings.schedule.dojangCli);
  if (pinFileProblem(m_settings.schedule.pinFile) || !program) {
    return;  // the retired pair stays; `dojang renew --recover` deletes it by hand
  }
  try {
    Running running;
    running.child = std::make_unique<RenewChild>(
        *program,
        std::vector<std::string>{"renew", "--recover", "--auto", "--json", "--pin-file",
                                 *m_settings.schedule.pinFile, "--journal", m_settings.databasePath.string()},
        m_settings.socketPath);
    running.label = "retired pairs";
    running.tokenLabel = here->plan.tokenLabel;
    running.housekeeping = true;
    m_running = std::move(running);
    logInfo("deleting retired pairs past retire_days on token \"" + here->plan.tokenLabel + "\"");
  } catch (const std::exception& error) {
    logError(std::string("renewal scheduler: cannot start dojang renew --recover: ") + error.what());
  }
}

void RenewalScheduler::finishHousekeeping(int status) {
  Running running = std::move(*m_running);
  m_running.reset();
  m_housekeepingNotBefore.reset();
  if (status == 0 && running.child) {
    const auto report = nlohmann::json::parse(running.child->standardOutput(), nullptr, false);
    if (report.is_object() && report.contains("recovered") && report["recovered"].is_array()) {
      for (const auto& line : report["recovered"]) {
        if (line.is_string()) {
          logInfo(line.get<std::string>());
        }
      }
    }
    return;
  }
  const auto failure = running.child ? failureOf(status, running.child->standardError())
                                     : ChildFailure{"it took too long and was ended", true};
  m_housekeepingNotBefore = system_clock::now() + m_settings.schedule.retryMax;
  logWarning("deleting retired pairs failed, tried again later: " + failure.message);
}

void RenewalScheduler::finishRenewal(int status) {
  Running running = std::move(*m_running);
  m_running.reset();
  Entry& entry = m_entries[running.certificateKey];
  const auto now = system_clock::now();
  std::optional<renewal::RenewalRecord> latest;
  try {
    latest = renewal::Journal(m_settings.databasePath).latestFor(running.certificateKey);
  } catch (const std::exception& error) {
    logError(std::string("renewal scheduler: the journal: ") + error.what());
  }
  // The journal, not the exit status, says whether it is renewed: a recovery that finished an
  // interrupted renewal exits non-zero, yet the certificate is renewed.
  if (latest && latest->step == renewal::RenewalStep::Retired) {
    entry = Entry{};
    logInfo("renewed \"" + running.label + "\" on token \"" + running.tokenLabel + "\" (journal #" +
            std::to_string(latest->id) + ")");
    notifyDesktop(
        "Certificate \"" + running.label + "\" renewed",
        "dojang renewed it on token \"" + running.tokenLabel + "\"; the new certificate is in use.");
    return;
  }
  const auto failure = running.child ? failureOf(status, running.child->standardError())
                                     : ChildFailure{"it took too long and was ended", true};
  entry.lastError = failure.message;
  if (failure.retryable) {
    ++entry.failures;
    entry.lastFailure = now;
    logWarning("automatic renewal of \"" + running.label + "\" failed (attempt " +
               std::to_string(entry.failures) + "), will retry: " + failure.message);
  } else {
    entry.stopped = true;
    logError("automatic renewal of \"" + running.label + "\" failed and is not retried: " + failure.message);
    notifyDesktop("Certificate \"" + running.label + "\" was not renewed",
                  failure.message + "\nRenew it with `dojang renew`.");
  }
}

void RenewalScheduler::notice(const TokenCertificate& certificate, long long left,
                              const std::string& typeLabel, const std::string& reason) {
  const std::string when = left < 0 ? "has expired"
                           : left == 0
                               ? "expires today"
                               : "expires in " + std::to_string(left) + (left == 1 ? " day" : " days");
  const std::string summary = "Certificate \"" + certificate.label + "\" " + when;
  const std::string body = typeLabel + " on token \"" + certificate.tokenLabel + "\"" +
                           (reason.empty() ? "" : ": " + reason) + ".";
  logWarning(summary + " (" + body + ")");
  notifyDesktop(summary, body);
}

}  // namespace dojang::daemon
