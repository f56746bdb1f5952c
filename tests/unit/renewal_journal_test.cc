// src/renewal/journal: the renewal journal's steps survive closing and crashes, only legal
// transitions are taken, recovery is told what to do, and the per-certificate lock keeps two
// renewals apart across processes and dies with its holder.
#include <poll.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <csignal>
#include <cstdlib>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "src/common/errors/error.h"
#include "src/common/sqlite/sqlite.h"
#include "src/renewal/journal/journal.h"
#include "src/renewal/journal/renewal_lock.h"
#include "tests/support/temp_dir.h"

namespace renewal = dojang::renewal;
using renewal::RenewalStep;

namespace {

const std::vector<RenewalStep> kAllSteps = {RenewalStep::Keygen,  RenewalStep::Requested,
                                            RenewalStep::Issued,  RenewalStep::Stored,
                                            RenewalStep::Retired, RenewalStep::RolledBack};

renewal::RenewalPlan samplePlan(const std::string& certificateKey = "SOFTHSM-0001/0a0b") {
  renewal::RenewalPlan plan;
  plan.certificateKey = certificateKey;
  plan.tokenSerial = "SOFTHSM-0001";
  plan.tokenLabel = "dojang test";
  plan.oldKeyId = {0x0a, 0x0b};
  plan.oldCertificateDer = {0x30, 0x82, 0x01, 0x00, 0x01};
  plan.oldLabel = "signCert";
  plan.newKeyId = {0x0c, 0x0d, 0x0e};
  plan.pendingLabel = "signCert (pending renewal)";
  plan.keyType = "ec-p256";
  plan.profile = "yessign-personal";
  plan.caName = "dojang-ca";
  plan.kind = "renew";
  plan.feeAcknowledgedKrw = 4400;
  return plan;
}

const std::vector<unsigned char> kIssuedCertificate = {0x30, 0x82, 0x02, 0x00, 0x42, 0x43};

// The dojang::Error that `call` throws; fails the test when it throws none.
dojang::Error errorFrom(const std::function<void()>& call) {
  try {
    call();
  } catch (const dojang::Error& error) {
    return error;
  }
  FAIL("no dojang::Error was thrown");
  throw std::logic_error("unreachable");
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// A forked child running `body`, which writes one byte to `readyFd` when the parent may look.
// The child never returns into Catch: it _exit()s, or waits to be killed when told to linger.
class Child final {
 public:
  Child(const std::function<void(int readyFd)>& body, bool lingerUntilKilled) {
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    m_pid = fork();
    REQUIRE(m_pid >= 0);
    if (m_pid == 0) {
      close(fds[0]);
      try {
        body(fds[1]);
      } catch (...) {
        _exit(2);
      }
      while (lingerUntilKilled) {
        pause();
      }
      _exit(0);
    }
    close(fds[1]);
    m_readyFd = fds[0];
  }
  ~Child() {
    if (m_pid > 0) {
      kill(m_pid, SIGKILL);
      waitpid(m_pid, nullptr, 0);
    }
    close(m_readyFd);
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  [[nodiscard]] pid_t pid() const noexcept { return m_pid; }

  // True once the child said it is ready; false if it died first or took over 10 s.
  bool waitReady() {
    pollfd ready{m_readyFd, POLLIN, 0};
    char byte = 0;
    return poll(&ready, 1, 10'000) == 1 && read(m_readyFd, &byte, 1) == 1;
  }

  // The child's wait status, after SIGKILL if `killFirst`.
  int reap(bool killFirst) {
    if (killFirst) {
      kill(m_pid, SIGKILL);
    }
    int status = 0;
    REQUIRE(waitpid(m_pid, &status, 0) == m_pid);
    m_pid = -1;
    return status;
  }

 private:
  pid_t m_pid = -1;
  int m_readyFd = -1;
};

void signalReady(int readyFd) {
  const char byte = 'r';
  if (write(readyFd, &byte, 1) != 1) {
    _exit(3);
  }
}

// Restores an environment variable when the test ends.
class ScopedEnvironment final {
 public:
  explicit ScopedEnvironment(std::string name) : m_name(std::move(name)) {
    if (const char* value = std::getenv(m_name.c_str()); value != nullptr) {
      m_saved = value;
    }
  }
  ~ScopedEnvironment() {
    if (m_saved) {
      setenv(m_name.c_str(), m_saved->c_str(), 1);
    } else {
      unsetenv(m_name.c_str());
    }
  }
  ScopedEnvironment(const ScopedEnvironment&) = delete;
  ScopedEnvironment& operator=(const ScopedEnvironment&) = delete;

 private:
  std::string m_name;
  std::optional<std::string> m_saved;
};

mode_t permissionsOf(const std::filesystem::path& path) {
  struct stat status {};
  REQUIRE(stat(path.c_str(), &status) == 0);
  return status.st_mode & 07777;
}

}  // namespace

TEST_CASE("steps are named and parsed both ways", "[renewal_journal]") {
  for (RenewalStep step : kAllSteps) {
    CHECK(renewal::fromString(renewal::toString(step)) == step);
  }
  CHECK(renewal::toString(RenewalStep::RolledBack) == "rolled-back");
  CHECK_FALSE(renewal::fromString("Retired").has_value());
  CHECK_FALSE(renewal::fromString("").has_value());
  CHECK(renewal::isTerminal(RenewalStep::Retired));
  CHECK(renewal::isTerminal(RenewalStep::RolledBack));
  CHECK_FALSE(renewal::isTerminal(RenewalStep::Stored));
}

TEST_CASE("only the next step, or a roll-back before Stored, is allowed", "[renewal_journal]") {
  const std::vector<std::pair<RenewalStep, RenewalStep>> allowed = {
      {RenewalStep::Keygen, RenewalStep::Requested},  {RenewalStep::Requested, RenewalStep::Issued},
      {RenewalStep::Issued, RenewalStep::Stored},     {RenewalStep::Stored, RenewalStep::Retired},
      {RenewalStep::Keygen, RenewalStep::RolledBack}, {RenewalStep::Requested, RenewalStep::RolledBack},
      {RenewalStep::Issued, RenewalStep::RolledBack},
  };
  for (RenewalStep from : kAllSteps) {
    for (RenewalStep to : kAllSteps) {
      const bool expected = std::find(allowed.begin(), allowed.end(), std::pair(from, to)) != allowed.end();
      INFO(renewal::toString(from) << " -> " << renewal::toString(to));
      CHECK(renewal::isAllowedTransition(from, to) == expected);
    }
  }
}

TEST_CASE("recoveryFor tells the engine what to do at every step", "[renewal_journal]") {
  renewal::RenewalRecord record;
  const std::vector<std::pair<RenewalStep, renewal::RecoveryAction>> expected = {
      {RenewalStep::Keygen, renewal::RecoveryAction::RollBack},
      {RenewalStep::Requested, renewal::RecoveryAction::RollBack},
      {RenewalStep::Issued, renewal::RecoveryAction::StoreCertificate},
      {RenewalStep::Stored, renewal::RecoveryAction::RetireOld},
      {RenewalStep::Retired, renewal::RecoveryAction::None},
      {RenewalStep::RolledBack, renewal::RecoveryAction::None},
  };
  for (const auto& [step, action] : expected) {
    record.step = step;
    INFO(renewal::toString(step));
    CHECK(renewal::recoveryFor(record) == action);
  }
  CHECK(renewal::toString(renewal::RecoveryAction::StoreCertificate) == "store certificate");
}

TEST_CASE("every step is persisted and read back after reopening", "[renewal_journal]") {
  dojang::test::TempDir directory;
  const auto path = directory / "state" / "dojang" / "renewal.db";
  int64_t clock = 1'700'000'000;
  const auto tick = [&clock] { return clock++; };

  int64_t id = 0;
  {
    renewal::Journal journal(path, tick);
    id = journal.begin(samplePlan()).id;
  }
  const auto reopenAndAdvance = [&](RenewalStep to, const renewal::StepData& data) {
    renewal::Journal journal(path, tick);
    return journal.advance(id, to, data);
  };
  CHECK(reopenAndAdvance(RenewalStep::Requested, {.note = "ir sent"}).step == RenewalStep::Requested);
  {
    renewal::Journal journal(path, tick);
    CHECK(journal.find(id)->step == RenewalStep::Requested);
  }
  CHECK(reopenAndAdvance(RenewalStep::Issued, {.issuedCertificateDer = kIssuedCertificate}).step ==
        RenewalStep::Issued);
  {
    renewal::Journal journal(path, tick);
    const renewal::RenewalRecord issued = *journal.find(id);
    CHECK(issued.step == RenewalStep::Issued);
    CHECK(issued.issuedCertificateDer == kIssuedCertificate);
    CHECK(renewal::recoveryFor(issued) == renewal::RecoveryAction::StoreCertificate);
  }
  reopenAndAdvance(RenewalStep::Stored, {});
  reopenAndAdvance(RenewalStep::Retired, {.oldKeyDeleteAfter = 1'800'000'000, .note = "old pair relabelled"});

  renewal::Journal journal(path, tick);
  const renewal::RenewalRecord record = *journal.find(id);
  CHECK(record.plan == samplePlan());
  CHECK(record.step == RenewalStep::Retired);
  CHECK(record.startedAt == 1'700'000'000);
  CHECK(record.updatedAt == 1'700'000'004);
  CHECK(record.ownerPid == getpid());
  CHECK(record.issuedCertificateDer == kIssuedCertificate);
  CHECK(record.oldKeyDeleteAfter == 1'800'000'000);
  CHECK_FALSE(record.oldKeyDeleted);
  CHECK_FALSE(record.rollbackReason.has_value());
  CHECK_FALSE(record.lastError.has_value());
  CHECK(renewal::recoveryFor(record) == renewal::RecoveryAction::None);

  REQUIRE(record.events.size() == 5);
  const std::vector<RenewalStep> order = {RenewalStep::Keygen, RenewalStep::Requested, RenewalStep::Issued,
                                          RenewalStep::Stored, RenewalStep::Retired};
  for (std::size_t index = 0; index < order.size(); ++index) {
    CHECK(record.events[index].step == order[index]);
    CHECK(record.events[index].at == 1'700'000'000 + static_cast<int64_t>(index));
  }
  CHECK(record.events[0].note == "renew ec-p256 from dojang-ca (yessign-personal)");
  CHECK(record.events[1].note == "ir sent");
  CHECK(record.events[4].note == "old pair relabelled");
}

TEST_CASE("illegal transitions are refused and change nothing", "[renewal_journal]") {
  dojang::test::TempDir directory;
  renewal::Journal journal(directory / "renewal.db");
  const int64_t id = journal.begin(samplePlan()).id;

  const dojang::Error skip = errorFrom(
      [&] { journal.advance(id, RenewalStep::Issued, {.issuedCertificateDer = kIssuedCertificate}); });
  CHECK(skip.rv() == CKR_FUNCTION_FAILED);
  CHECK(skip.kind() == dojang::ErrorKind::Fatal);
  CHECK(contains(skip.what(), "keygen"));
  CHECK(contains(skip.what(), "issued"));
  CHECK(errorFrom([&] { journal.advance(id, RenewalStep::Keygen); }).kind() == dojang::ErrorKind::Fatal);

  journal.advance(id, RenewalStep::Requested);
  journal.advance(id, RenewalStep::Issued, {.issuedCertificateDer = kIssuedCertificate});
  journal.advance(id, RenewalStep::Stored);
  const dojang::Error noWayBack =
      errorFrom([&] { journal.advance(id, RenewalStep::RolledBack, {.note = "too late"}); });
  CHECK(noWayBack.kind() == dojang::ErrorKind::Fatal);
  CHECK(contains(noWayBack.what(), "stored"));
  CHECK(contains(noWayBack.what(), "rolled-back"));
  CHECK(errorFrom([&] { journal.advance(id, RenewalStep::Stored); }).kind() == dojang::ErrorKind::Fatal);

  journal.advance(id, RenewalStep::Retired);
  for (RenewalStep to : kAllSteps) {
    CHECK(errorFrom([&] { journal.advance(id, to, {.note = "again"}); }).kind() == dojang::ErrorKind::Fatal);
  }
  const renewal::RenewalRecord record = *journal.find(id);
  CHECK(record.step == RenewalStep::Retired);
  CHECK(record.events.size() == 5);
  CHECK(errorFrom([&] { journal.advance(id + 100, RenewalStep::Requested); }).kind() ==
        dojang::ErrorKind::BadInput);
}

TEST_CASE("a step refuses facts that belong to another step", "[renewal_journal]") {
  dojang::test::TempDir directory;
  renewal::Journal journal(directory / "renewal.db");
  const int64_t id = journal.begin(samplePlan()).id;

  CHECK(errorFrom([&] {
          journal.advance(id, RenewalStep::Requested, {.issuedCertificateDer = {1}});
        }).kind() == dojang::ErrorKind::BadInput);
  CHECK(errorFrom([&] { journal.advance(id, RenewalStep::Requested, {.oldKeyDeleted = true}); }).kind() ==
        dojang::ErrorKind::BadInput);
  CHECK(errorFrom([&] { journal.advance(id, RenewalStep::RolledBack); }).kind() ==
        dojang::ErrorKind::BadInput);
  journal.advance(id, RenewalStep::Requested);
  CHECK(errorFrom([&] { journal.advance(id, RenewalStep::Issued); }).kind() == dojang::ErrorKind::BadInput);
  CHECK(journal.find(id)->step == RenewalStep::Requested);
  CHECK(journal.find(id)->events.size() == 2);
}

TEST_CASE("a plan must say everything recovery needs", "[renewal_journal]") {
  dojang::test::TempDir directory;
  renewal::Journal journal(directory / "renewal.db");
  renewal::RenewalPlan noNewKey = samplePlan();
  noNewKey.newKeyId.clear();
  CHECK(errorFrom([&] { journal.begin(noNewKey); }).kind() == dojang::ErrorKind::BadInput);
  renewal::RenewalPlan badKind = samplePlan();
  badKind.kind = "upgrade";
  CHECK(errorFrom([&] { journal.begin(badKind); }).kind() == dojang::ErrorKind::BadInput);
  renewal::RenewalPlan renewWithoutOld = samplePlan();
  renewWithoutOld.oldCertificateDer.clear();
  CHECK(errorFrom([&] { journal.begin(renewWithoutOld); }).kind() == dojang::ErrorKind::BadInput);
  CHECK(journal.history(10).empty());

  renewal::RenewalPlan enroll = samplePlan("SOFTHSM-0001/0c0d0e");
  enroll.kind = "enroll";
  enroll.oldKeyId.clear();
  enroll.oldCertificateDer.clear();
  enroll.oldLabel.clear();
  enroll.feeAcknowledgedKrw.reset();
  const renewal::RenewalRecord record = journal.begin(enroll);
  CHECK(record.plan.oldKeyId.empty());
  CHECK_FALSE(record.plan.feeAcknowledgedKrw.has_value());
}

TEST_CASE("roll-back, errors, unfinished() and history()", "[renewal_journal]") {
  dojang::test::TempDir directory;
  renewal::Journal journal(directory / "renewal.db");

  const int64_t retired = journal.begin(samplePlan("T/01")).id;
  for (RenewalStep step :
       {RenewalStep::Requested, RenewalStep::Issued, RenewalStep::Stored, RenewalStep::Retired}) {
    journal.advance(retired, step,
                    {.issuedCertificateDer =
                         step == RenewalStep::Issued ? kIssuedCertificate : std::vector<unsigned char>{}});
  }
  const int64_t rolledBack = journal.begin(samplePlan("T/02")).id;
  journal.advance(rolledBack, RenewalStep::Requested);
  journal.recordError(rolledBack, "CA said: badPOP");
  journal.advance(rolledBack, RenewalStep::RolledBack, {.note = "the CA rejected the request"});
  const int64_t requested = journal.begin(samplePlan("T/03")).id;
  journal.advance(requested, RenewalStep::Requested);
  journal.recordError(requested, "connection timed out");
  const int64_t keygen = journal.begin(samplePlan("T/04")).id;

  // Only the finished renewal installed a pair; one rolled back or unfinished installed nothing.
  const auto installer = journal.finishedRenewalThatInstalled("SOFTHSM-0001", {0x0c, 0x0d, 0x0e});
  REQUIRE(installer);
  CHECK(installer->id == retired);
  CHECK_FALSE(journal.finishedRenewalThatInstalled("SOFTHSM-0002", {0x0c, 0x0d, 0x0e}));
  CHECK_FALSE(journal.finishedRenewalThatInstalled("SOFTHSM-0001", {0x0a, 0x0b}));

  const renewal::RenewalRecord undone = *journal.find(rolledBack);
  CHECK(undone.rollbackReason == "the CA rejected the request");
  CHECK(undone.lastError == "CA said: badPOP");
  REQUIRE(undone.events.size() == 4);
  CHECK(undone.events[2].step == RenewalStep::Requested);
  CHECK(undone.events[2].note == "error: CA said: badPOP");
  CHECK(undone.events[3].step == RenewalStep::RolledBack);

  const renewal::RenewalRecord stuck = *journal.find(requested);
  CHECK(stuck.step == RenewalStep::Requested);
  CHECK(stuck.lastError == "connection timed out");

  const std::vector<renewal::RenewalRecord> open = journal.unfinished();
  REQUIRE(open.size() == 2);
  CHECK(open[0].id == requested);
  CHECK(open[1].id == keygen);
  CHECK(open[0].events.size() == 3);

  const std::vector<renewal::RenewalRecord> newest = journal.history(2);
  REQUIRE(newest.size() == 2);
  CHECK(newest[0].id == keygen);
  CHECK(newest[1].id == requested);
  const std::vector<renewal::RenewalRecord> all = journal.history(100);
  REQUIRE(all.size() == 4);
  CHECK(all[3].id == retired);
  CHECK(all[3].events.size() == 5);

  CHECK(journal.latestFor("T/02")->id == rolledBack);
  CHECK_FALSE(journal.latestFor("T/99").has_value());
  CHECK_FALSE(journal.find(9999).has_value());
  const int64_t again = journal.begin(samplePlan("T/02")).id;
  CHECK(journal.latestFor("T/02")->id == again);
}

TEST_CASE("retired old pairs come due for deletion and are marked deleted", "[renewal_journal]") {
  dojang::test::TempDir directory;
  renewal::Journal journal(directory / "renewal.db");
  const auto retire = [&](const std::string& key, const renewal::StepData& retirement) {
    const int64_t id = journal.begin(samplePlan(key)).id;
    journal.advance(id, RenewalStep::Requested);
    journal.advance(id, RenewalStep::Issued, {.issuedCertificateDer = kIssuedCertificate});
    journal.advance(id, RenewalStep::Stored);
    journal.advance(id, RenewalStep::Retired, retirement);
    return id;
  };
  const int64_t later = retire("T/later", {.oldKeyDeleteAfter = 2000});
  const int64_t sooner = retire("T/sooner", {.oldKeyDeleteAfter = 1000});
  retire("T/deleted-at-once", {.oldKeyDeleted = true});
  retire("T/kept-for-ever", {});
  const int64_t unfinished = journal.begin(samplePlan("T/unfinished")).id;

  CHECK(journal.dueForOldKeyDeletion(999).empty());
  REQUIRE(journal.dueForOldKeyDeletion(1000).size() == 1);
  const std::vector<renewal::RenewalRecord> due = journal.dueForOldKeyDeletion(5000);
  REQUIRE(due.size() == 2);
  CHECK(due[0].id == sooner);
  CHECK(due[1].id == later);

  CHECK(journal.markOldKeyDeleted(sooner));
  CHECK_FALSE(journal.markOldKeyDeleted(sooner));
  const renewal::RenewalRecord deleted = *journal.find(sooner);
  CHECK(deleted.oldKeyDeleted);
  CHECK(deleted.events.back().note == "old key deleted");
  REQUIRE(journal.dueForOldKeyDeletion(5000).size() == 1);
  CHECK(journal.dueForOldKeyDeletion(5000)[0].id == later);
  CHECK(errorFrom([&] { journal.markOldKeyDeleted(unfinished); }).kind() == dojang::ErrorKind::Fatal);
}

TEST_CASE("a renewal killed after Requested is found there, to be rolled back", "[renewal_journal]") {
  dojang::test::TempDir directory;
  const auto path = directory / "renewal.db";
  const bool bySigkill = GENERATE(true, false);
  INFO((bySigkill ? "SIGKILL" : "_exit"));

  Child child(
      [&](int) {
        renewal::Journal journal(path);
        const int64_t id = journal.begin(samplePlan()).id;
        journal.advance(id, RenewalStep::Requested, {.note = "ir sent"});
        if (bySigkill) {
          raise(SIGKILL);
        }
        _exit(0);  // no destructors: the journal is never closed
      },
      false);
  const pid_t childPid = child.pid();
  const int status = child.reap(false);
  if (bySigkill) {
    CHECK((WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL));
  } else {
    CHECK((WIFEXITED(status) && WEXITSTATUS(status) == 0));
  }

  renewal::Journal journal(path);
  const std::vector<renewal::RenewalRecord> open = journal.unfinished();
  REQUIRE(open.size() == 1);
  CHECK(open[0].step == RenewalStep::Requested);
  CHECK(open[0].ownerPid == childPid);
  CHECK(renewal::recoveryFor(open[0]) == renewal::RecoveryAction::RollBack);
  CHECK(open[0].plan.newKeyId == samplePlan().newKeyId);
  // Its lock, had it held one, died with it; begin refuses until recovery has run.
  const dojang::Error refused = errorFrom([&] { journal.begin(samplePlan()); });
  CHECK(refused.kind() == dojang::ErrorKind::Refused);
  CHECK(contains(refused.what(), "recovery must run first"));
  journal.advance(open[0].id, RenewalStep::RolledBack, {.note = "recovered: pending key deleted"});
  CHECK(journal.begin(samplePlan()).step == RenewalStep::Keygen);
}

TEST_CASE("the lock excludes a second holder, in this process and in another", "[renewal_journal]") {
  dojang::test::TempDir directory;
  const auto path = directory / "renewal.db";
  const std::string key = "SOFTHSM-0001/0a0b";

  CHECK(renewal::RenewalLock::lockFilePath(path, "abc") ==
        directory / "locks" / "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad.lock");
  CHECK_FALSE(renewal::RenewalLock::isHeld(path, key));
  {
    std::optional<renewal::RenewalLock> first = renewal::RenewalLock::tryAcquire(path, key);
    REQUIRE(first.has_value());
    CHECK(permissionsOf(directory / "locks") == 0700);
    CHECK(first->certificateKey() == key);
    CHECK_FALSE(renewal::RenewalLock::tryAcquire(path, key).has_value());
    CHECK(renewal::RenewalLock::tryAcquire(path, "SOFTHSM-0001/ffff").has_value());
    CHECK(renewal::RenewalLock::isHeldByThisProcess(path, key));
    renewal::RenewalLock moved = std::move(*first);
    first.reset();
    CHECK(renewal::RenewalLock::isHeld(path, key));
  }
  CHECK_FALSE(renewal::RenewalLock::isHeld(path, key));
  CHECK_FALSE(renewal::RenewalLock::isHeldByThisProcess(path, key));

  Child holder(
      [&](int readyFd) {
        static std::optional<renewal::RenewalLock> lock;  // kept until the kill
        lock = renewal::RenewalLock::tryAcquire(path, key);
        if (!lock) {
          _exit(4);
        }
        signalReady(readyFd);
      },
      true);
  REQUIRE(holder.waitReady());
  CHECK_FALSE(renewal::RenewalLock::tryAcquire(path, key).has_value());
  CHECK(renewal::RenewalLock::isHeld(path, key));
  CHECK_FALSE(renewal::RenewalLock::isHeldByThisProcess(path, key));
  const int status = holder.reap(true);
  CHECK((WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL));
  CHECK(renewal::RenewalLock::tryAcquire(path, key).has_value());
}

TEST_CASE("begin refuses while another renewal of the certificate is unfinished", "[renewal_journal]") {
  dojang::test::TempDir directory;
  const auto path = directory / "renewal.db";
  const std::string key = samplePlan().certificateKey;

  Child running(
      [&](int readyFd) {
        static std::optional<renewal::RenewalLock> lock;
        lock = renewal::RenewalLock::tryAcquire(path, key);
        if (!lock) {
          _exit(4);
        }
        renewal::Journal journal(path);
        journal.advance(journal.begin(samplePlan()).id, RenewalStep::Requested);
        signalReady(readyFd);
      },
      true);
  REQUIRE(running.waitReady());

  renewal::Journal journal(path);
  const int64_t runningId = journal.latestFor(key)->id;
  const dojang::Error busy = errorFrom([&] { journal.begin(samplePlan()); });
  CHECK(busy.kind() == dojang::ErrorKind::Retryable);
  CHECK(contains(busy.what(), "renewal " + std::to_string(runningId)));
  CHECK(contains(busy.what(), "pid " + std::to_string(running.pid())));
  CHECK(journal.begin(samplePlan("SOFTHSM-0001/other")).step == RenewalStep::Keygen);

  CHECK(running.reap(true) != 0);
  const dojang::Error interrupted = errorFrom([&] { journal.begin(samplePlan()); });
  CHECK(interrupted.kind() == dojang::ErrorKind::Refused);
  CHECK(contains(interrupted.what(), "recovery must run first"));

  // The intended use: take the lock, recover, then begin.
  std::optional<renewal::RenewalLock> lock = renewal::RenewalLock::tryAcquire(path, key);
  REQUIRE(lock.has_value());
  const dojang::Error ours = errorFrom([&] { journal.begin(samplePlan()); });
  CHECK(ours.kind() == dojang::ErrorKind::Refused);
  CHECK(contains(ours.what(), "recover it"));
  for (const renewal::RenewalRecord& record : journal.unfinished()) {
    if (record.plan.certificateKey == key) {
      REQUIRE(renewal::recoveryFor(record) == renewal::RecoveryAction::RollBack);
      journal.advance(record.id, RenewalStep::RolledBack, {.note = "recovered"});
    }
  }
  CHECK(journal.begin(samplePlan()).ownerPid == getpid());
}

TEST_CASE("a journal from a newer dojang is refused", "[renewal_journal]") {
  dojang::test::TempDir directory;
  const auto path = directory / "renewal.db";
  { renewal::Journal created(path); }
  {
    dojang::sqlite::Database raw(path.string());
    raw.execute("PRAGMA user_version = 99");
  }
  const dojang::Error newer = errorFrom([&] { renewal::Journal journal(path); });
  CHECK(newer.kind() == dojang::ErrorKind::Unsupported);
  CHECK(contains(newer.what(), "schema version 99"));
  CHECK(contains(newer.what(), path.string()));
}

TEST_CASE("the journal is WAL in private directories, shared by two connections", "[renewal_journal]") {
  dojang::test::TempDir directory;
  const auto path = directory / "state" / "dojang" / "renewal.db";
  renewal::Journal cli(path);
  CHECK(permissionsOf(directory / "state") == 0700);
  CHECK(permissionsOf(directory / "state" / "dojang") == 0700);

  dojang::sqlite::Database raw(path.string());
  dojang::sqlite::Statement mode(raw, "PRAGMA journal_mode");
  REQUIRE(mode.step());
  CHECK(mode.text(0) == "wal");
  dojang::sqlite::Statement version(raw, "PRAGMA user_version");
  REQUIRE(version.step());
  CHECK(version.integer(0) == 2);

  renewal::Journal daemon(path);
  const int64_t id = cli.begin(samplePlan()).id;
  daemon.advance(id, RenewalStep::Requested);
  CHECK(cli.find(id)->step == RenewalStep::Requested);
}

TEST_CASE("the default path honours XDG_STATE_HOME, then HOME", "[renewal_journal]") {
  const ScopedEnvironment savedState("XDG_STATE_HOME");
  const ScopedEnvironment savedHome("HOME");
  setenv("XDG_STATE_HOME", "/srv/state", 1);
  setenv("HOME", "/home/user", 1);
  CHECK(renewal::Journal::defaultPath() == "/srv/state/dojang/renewal.db");
  setenv("XDG_STATE_HOME", "relative/state", 1);  // ignored, as the XDG spec says
  CHECK(renewal::Journal::defaultPath() == "/home/user/.local/state/dojang/renewal.db");
  unsetenv("XDG_STATE_HOME");
  CHECK(renewal::Journal::defaultPath() == "/home/user/.local/state/dojang/renewal.db");
  unsetenv("HOME");
  CHECK(errorFrom([] { (void)renewal::Journal::defaultPath(); }).kind() == dojang::ErrorKind::BadInput);
}

TEST_CASE("a version 1 journal gains the --delete-old column and keeps its renewals", "[renewal_journal]") {
  dojang::test::TempDir directory;
  const auto path = directory / "renewal.db";
  int64_t id = 0;
  {
    renewal::Journal journal(path);
    id = journal.begin(samplePlan()).id;
  }
  {
    // What dojang 0.1's first journal looked like: no delete_old_at_once column, user_version 1.
    dojang::sqlite::Database raw(path.string());
    raw.execute("ALTER TABLE renewals DROP COLUMN delete_old_at_once");
    raw.execute("PRAGMA user_version = 1");
  }
  renewal::Journal journal(path);
  const auto kept = journal.find(id);
  REQUIRE(kept);
  CHECK(kept->plan == samplePlan());
  auto plan = samplePlan("T/09");
  plan.deleteOldAtOnce = true;
  CHECK(journal.find(journal.begin(plan).id)->plan.deleteOldAtOnce);
}
