// `dojang renew` killed at each journal transition and between its token writes (the fault points
// of src/renewal/engine/fault_point.h, live only in the test build dojang-with-faults), then
// recovered by the installed build: afterwards the token holds exactly one usable certificate+key
// under the old label, nothing pending, no orphan key, and the journal ends retired or rolled back.
// Also the token going away (dojangd killed) while a renewal is stopped at a fault point.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/renewal_fixture.h"

namespace test = dojang::test;

namespace {

constexpr const char* kLabel = test::kRenewalLabel;
constexpr int kKilled = 128 + SIGKILL;  // as run_command reports a SIGKILLed child

std::string faultsCli() {
  const char* path = std::getenv("DOJANG_CLI_FAULTS");
  if (path == nullptr) {
    throw std::runtime_error("DOJANG_CLI_FAULTS is not set (run through meson test)");
  }
  return path;
}

// The points in the order a renewal reaches them; those from "issued" on come after the CA's
// certificate is journalled, so recovery finishes the renewal instead of rolling it back.
const std::vector<std::string> kPoints = {"planned",         "generated", "requested",      "issued",
                                          "stored-on-token", "stored",    "new-relabelled", "old-retired"};

bool finishesAfter(const std::string& point) {
  for (const auto& early : {"planned", "generated", "requested"}) {
    if (point == early) {
      return false;
    }
  }
  return true;
}

struct TokenObject {
  std::string kind;  // "Certificate", "Private Key", "Public Key"
  std::string label;
  std::string id;
};

// pkcs11-tool --list-objects: "<Kind> Object; ..." then indented "label:" and "ID:" lines.
std::vector<TokenObject> parseObjects(const std::string& listing) {
  std::vector<TokenObject> objects;
  std::istringstream lines(listing);
  std::string line;
  const auto valueOf = [](const std::string& text, const std::string& key) -> std::optional<std::string> {
    const auto at = text.find(key);
    if (at == std::string::npos || text.find_first_not_of(' ') != at) {
      return std::nullopt;
    }
    const auto value = text.find_first_not_of(' ', at + key.size());
    return value == std::string::npos ? std::string() : text.substr(value);
  };
  while (std::getline(lines, line)) {
    if (const auto object = line.find(" Object"); object != std::string::npos && line.front() != ' ') {
      objects.push_back({line.substr(0, object), "", ""});
    } else if (objects.empty()) {
      continue;
    } else if (const auto label = valueOf(line, "label:")) {
      objects.back().label = *label;
    } else if (const auto id = valueOf(line, "ID:")) {
      objects.back().id = *id;
    }
  }
  return objects;
}

struct Outcome {
  std::string currentId;  // the CKA_ID of the one certificate labelled kLabel
  nlohmann::json latest;  // the newest journal record
};

// The invariant after recovery; returns what it found for the caller's own checks.
Outcome checkInvariant(const test::RenewalFixture& f) {
  const auto listing = f.objects();
  INFO(listing);
  const auto objects = parseObjects(listing);
  REQUIRE(!objects.empty());
  Outcome outcome;
  std::size_t current = 0;
  for (const auto& object : objects) {
    CAPTURE(object.kind, object.label, object.id);
    CHECK(object.label.find("pending") == std::string::npos);
    if (object.kind == "Certificate") {
      if (object.label == kLabel) {
        ++current;
        outcome.currentId = object.id;
      }
      continue;
    }
    // No orphan key: every key half has its certificate (the retired old pair keeps its own).
    const bool certified = std::any_of(objects.begin(), objects.end(), [&](const TokenObject& other) {
      return other.kind == "Certificate" && other.id == object.id;
    });
    CHECK(certified);
  }
  REQUIRE(current == 1);
  // Usable: the current certificate has its private key, under the same label.
  CHECK(std::any_of(objects.begin(), objects.end(), [&](const TokenObject& object) {
    return object.kind == "Private Key" && object.id == outcome.currentId && object.label == kLabel;
  }));

  const auto history = f.run({test::dojangCli(), "renew", "--history", "--json"});
  INFO(history.out << history.err);
  REQUIRE(history.exitCode == 0);
  const auto journal = nlohmann::json::parse(history.out);
  REQUIRE(!journal.empty());
  for (const auto& record : journal) {
    CHECK((record["step"] == "retired" || record["step"] == "rolled-back"));
  }
  outcome.latest = journal.front();
  return outcome;
}

// What recovery must have made of a renewal killed at `point`.
void checkRecovered(const test::RenewalFixture& f, const std::string& point) {
  const auto outcome = checkInvariant(f);
  const auto objects = f.objects();
  if (finishesAfter(point)) {
    CHECK(outcome.latest["step"] == "retired");
    CHECK(outcome.currentId != "01");  // the new certificate is the current one
    CHECK(objects.find("label:      signkey (retired ") != std::string::npos);
  } else {
    CHECK(outcome.latest["step"] == "rolled-back");
    CHECK(outcome.currentId == "01");  // the old pair, untouched
    CHECK(objects.find("retired") == std::string::npos);
  }
}

test::CommandResult renewWithFault(const test::RenewalFixture& f, const std::string& point,
                                   const std::vector<std::string>& args = {kLabel, "--accept-fee", "4400"}) {
  return f.renew(args, f.token.pin(), faultsCli(), {{"DOJANG_FAULT_AT", point}});
}

test::CommandResult recover(const test::RenewalFixture& f) {
  return f.renew({"--recover"}, f.token.pin());
}

// dojang-with-faults running in the background, stopped (SIGSTOP) at a fault point until told to
// go on; killed and reaped on destruction if still there.
class StoppedRenewal final {
 public:
  StoppedRenewal(const test::RenewalFixture& f, const std::string& point)
      : m_output(f.work.path() / "stopped.err") {
    auto env = f.env;
    env["DOJANG_FAULT_AT"] = point;
    env["DOJANG_FAULT_ACTION"] = "stop";
    std::vector<std::string> argv = {
        faultsCli(),   "renew", "--config",     (f.work.path() / "renewal.toml").string(),
        "--pin-stdin", kLabel,  "--accept-fee", "4400"};
    int input[2];
    REQUIRE(::pipe(input) == 0);
    m_pid = ::fork();
    REQUIRE(m_pid >= 0);
    if (m_pid == 0) {
      for (const auto& [name, value] : env) {
        ::setenv(name.c_str(), value.c_str(), 1);
      }
      ::dup2(input[0], STDIN_FILENO);
      const int err = ::creat(m_output.c_str(), 0600);
      ::dup2(err, STDOUT_FILENO);
      ::dup2(err, STDERR_FILENO);
      ::close(input[1]);
      std::vector<char*> args;
      for (auto& arg : argv) {
        args.push_back(arg.data());
      }
      args.push_back(nullptr);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
    ::close(input[0]);
    const std::string pin = f.token.pin() + "\n";
    REQUIRE(::write(input[1], pin.data(), pin.size()) == static_cast<ssize_t>(pin.size()));
    ::close(input[1]);
  }
  ~StoppedRenewal() {
    if (m_pid > 0) {
      ::kill(m_pid, SIGKILL);
      (void)::waitpid(m_pid, nullptr, 0);
    }
  }
  StoppedRenewal(const StoppedRenewal&) = delete;
  StoppedRenewal& operator=(const StoppedRenewal&) = delete;

  // True once it has stopped at the point (within 60 s).
  bool waitStopped() {
    for (int tries = 0; tries < 600; ++tries) {
      int status = 0;
      const pid_t got = ::waitpid(m_pid, &status, WNOHANG | WUNTRACED);
      if (got == m_pid) {
        if (WIFSTOPPED(status)) {
          return true;
        }
        m_pid = -1;  // it ended without reaching the point
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }
  // SIGCONT, then its exit status (128 + signal when killed) and what it wrote.
  std::pair<int, std::string> resume() {
    ::kill(m_pid, SIGCONT);
    int status = 0;
    (void)::waitpid(m_pid, &status, 0);
    m_pid = -1;
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return {code, dojang::ca::test::readFile(m_output.string())};
  }

 private:
  std::filesystem::path m_output;
  pid_t m_pid = -1;
};

}  // namespace

TEST_CASE("dojang renew killed at each fault point: recovery finishes or rolls back", "[renewal_faults]") {
  const auto point = GENERATE(from_range(kPoints));
  CAPTURE(point);
  test::RenewalFixture f("EC:prime256v1");

  const auto killed = renewWithFault(f, point);
  INFO(killed.out << killed.err);
  REQUIRE(killed.exitCode == kKilled);

  const auto recovered = recover(f);
  INFO(recovered.out << recovered.err);
  REQUIRE(recovered.exitCode == 0);
  CHECK(recovered.out.find(finishesAfter(point) ? "finished" : "rolled back") != std::string::npos);
  checkRecovered(f, point);
  const auto before = checkInvariant(f);

  // Either way the certificate labelled signkey is renewable again (the test CA's certificates are
  // valid 20 days, inside the window): the old one after a rollback, the new one after finishing.
  const auto again = f.renew({kLabel, "--accept-fee", "4400", "--json"}, f.token.pin());
  INFO(again.out << again.err);
  REQUIRE(again.exitCode == 0);
  const auto after = checkInvariant(f);
  CHECK(after.latest["step"] == "retired");
  CHECK(after.currentId != before.currentId);
  CHECK(nlohmann::json::parse(again.out)["key_id"] == after.currentId);
  // Nothing further to recover.
  CHECK(recover(f).out.find("no interrupted renewal") != std::string::npos);
}

TEST_CASE("a plain dojang renew after a kill recovers first", "[renewal_faults]") {
  const auto point = GENERATE(as<std::string>(), "generated", "stored-on-token", "old-retired");
  CAPTURE(point);
  test::RenewalFixture f("EC:prime256v1");
  REQUIRE(renewWithFault(f, point).exitCode == kKilled);

  const auto renewed = f.renew({kLabel, "--accept-fee", "4400"}, f.token.pin());
  INFO(renewed.out << renewed.err);
  if (finishesAfter(point)) {
    // The interrupted renewal is finished, and that is the renewal asked for: nothing more to do.
    CHECK(renewed.exitCode == 1);
    CHECK(renewed.err.find("has now been finished") != std::string::npos);
    checkRecovered(f, point);
  } else {
    // Rolled back, then renewed: two journal records, the older one rolled back.
    REQUIRE(renewed.exitCode == 0);
    const auto outcome = checkInvariant(f);
    CHECK(outcome.latest["step"] == "retired");
    CHECK(outcome.currentId != "01");
    const auto history =
        nlohmann::json::parse(f.run({test::dojangCli(), "renew", "--history", "--json"}).out);
    REQUIRE(history.size() == 2);
    CHECK(history[1]["step"] == "rolled-back");
  }
}

TEST_CASE("a recovery killed between its own token writes is recovered again", "[renewal_faults]") {
  const auto [point, recoveryPoint] =
      GENERATE(std::pair<std::string, std::string>{"generated", "recovery-deleted-pending"},
               std::pair<std::string, std::string>{"issued", "recovery-stored-on-token"},
               std::pair<std::string, std::string>{"stored", "new-relabelled"});
  CAPTURE(point, recoveryPoint);
  test::RenewalFixture f("EC:prime256v1");
  REQUIRE(renewWithFault(f, point).exitCode == kKilled);
  REQUIRE(renewWithFault(f, recoveryPoint, {"--recover"}).exitCode == kKilled);

  const auto recovered = recover(f);
  INFO(recovered.out << recovered.err);
  REQUIRE(recovered.exitCode == 0);
  checkRecovered(f, point);
}

TEST_CASE("dojang renew --delete-old killed after storing: recovery deletes the old pair as asked",
          "[renewal_faults]") {
  const auto point = GENERATE(as<std::string>(), "stored", "new-relabelled");
  CAPTURE(point);
  test::RenewalFixture f("EC:prime256v1");
  REQUIRE(renewWithFault(f, point, {kLabel, "--accept-fee", "4400", "--delete-old"}).exitCode == kKilled);

  const auto recovered = recover(f);
  INFO(recovered.out << recovered.err);
  REQUIRE(recovered.exitCode == 0);
  const auto outcome = checkInvariant(f);
  CHECK(outcome.latest["step"] == "retired");
  CHECK(outcome.currentId != "01");
  // --delete-old was journalled with the plan: the old pair is gone now, not kept for retire_days.
  const auto listing = f.objects();
  INFO(listing);
  for (const auto& object : parseObjects(listing)) {
    CHECK(object.id != "01");
    CHECK(object.label.find("retired") == std::string::npos);
  }
}

TEST_CASE("the token goes away while a renewal is stopped at a fault point", "[renewal_faults]") {
  const auto point = GENERATE(as<std::string>(), "requested", "stored");
  CAPTURE(point);
  test::RenewalFixture f("EC:prime256v1");
  StoppedRenewal renewal(f, point);
  REQUIRE(renewal.waitStopped());
  f.daemon.kill9();
  const auto [code, output] = renewal.resume();
  INFO(output);
  CHECK(code != 0);
  CHECK(code != kKilled);
  // A clear error that says what state the certificate is in and how it gets resolved.
  CHECK(output.find("the old certificate and key") != std::string::npos);
  CHECK(output.find("dojang renew --recover") != std::string::npos);
  if (finishesAfter(point)) {
    CHECK(output.find("the CA issued the new certificate") != std::string::npos);
  }

  f.daemon.restart();
  const auto recovered = recover(f);
  INFO(recovered.out << recovered.err);
  REQUIRE(recovered.exitCode == 0);
  checkRecovered(f, point);
}
