// dojangd's renewal scheduler end to end: a fresh SoftHSM token behind a real dojangd whose
// dojangd.toml has a [renewal] table (1 s checks), dojang-ca on loopback issuing 20-day
// certificates (inside the 30-day window), the first certificate from `openssl cmp` through the
// token, then no command at all: dojangd renews (free profile) or only notifies (paid profile
// above the fee ceiling; the Notify call is watched on a private session bus with dbus-monitor).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>

#include "tests/ca/ca_test_support.h"
#include "tests/integration/renewal_fixture.h"
#include "tests/support/background_process.h"
#include "tests/support/dojangd_process.h"
#include "tests/support/run_command.h"
#include "tests/support/softhsm_token.h"
#include "tests/support/temp_dir.h"

extern char** environ;

namespace test = dojang::test;
namespace catest = dojang::ca::test;

namespace {

using test::dojangCli;
using test::writeText;

constexpr const char* kLabel = "signkey";

std::string readText(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// True once `done` holds, polled every 200 ms for at most `patience`.
bool eventually(const std::function<bool()>& done, std::chrono::seconds patience) {
  const auto deadline = std::chrono::steady_clock::now() + patience;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return done();
}

// A token, a CA issuing 20-day certificates under `profile`, dojangd with `renewalConfig`, then
// the first certificate (keygen through the module, ir with `openssl cmp`, --write-object).
// What a test changes in the fixture's files before dojangd starts: the CA URL renewal.toml
// names (default: the test's CA) and the mode of the PIN file.
struct FixtureFiles {
  std::optional<std::string> caUrl;
  mode_t pinMode = 0600;
  int retireDays = 30;
};

// A loopback URL where nothing listens (the port was bound, then closed).
std::string closedCaUrl() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&address), length) == 0);
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0);
  ::close(fd);
  return "http://127.0.0.1:" + std::to_string(ntohs(address.sin_port)) + "/";
}

struct Fixture {
  Fixture(const std::string& profile, long long fee, const std::string& renewalConfig,
          std::map<std::string, std::string> daemonEnv = {}, const FixtureFiles& files = {})
      : caDir(work.path() / "ca") {
    REQUIRE(catest::run({catest::dojangCa(), "init", "--dir", caDir.string()}).exitCode == 0);
    server = std::make_unique<catest::CaServer>(caDir.string(),
                                                std::vector<std::string>{"--test-validity-days", "20"});
    std::filesystem::create_directories(work.path() / "config" / "dojang");
    retireDays = files.retireDays;
    writeRenewalConfig(files.caUrl.value_or(server->url("/")));
    writeText(pinFile(), token.pin() + "\n");
    ::chmod(pinFile().c_str(), files.pinMode);
    daemonEnv["XDG_STATE_HOME"] = (work.path() / "state").string();
    daemonEnv["XDG_CONFIG_HOME"] = (work.path() / "config").string();
    daemon = std::make_unique<test::DojangdProcess>(
        token, test::DojangdOptions{{},
                                    "[renewal]\ncheck_interval_seconds = 1\nretry_initial_seconds = 1\n"
                                    "pin_file = \"" +
                                        pinFile().string() + "\"\n" + renewalConfig,
                                    daemonEnv});
    env = daemon->env();
    env["DOJANG_MODULE"] = test::dojangModulePath();
    env["XDG_STATE_HOME"] = (work.path() / "state").string();
    env["XDG_CONFIG_HOME"] = (work.path() / "config").string();
    REQUIRE(run({"pkcs11-tool", "--module", test::dojangModulePath(), "--login", "--pin", token.pin(),
                 "--keypairgen", "--key-type", "EC:prime256v1", "--id", "01", "--label", kLabel})
                .exitCode == 0);
    enrol(profile, fee);
  }

  std::filesystem::path pinFile() const { return work.path() / "pin"; }

  // The CLI (and so the scheduler's child) reads renewal.toml at every run.
  void writeRenewalConfig(const std::string& caUrl) const {
    writeText(work.path() / "config" / "dojang" / "renewal.toml",
              "[renewal]\ndefault_ca = \"test\"\nretire_days = " + std::to_string(retireDays) +
                  "\n[ca.test]\nurl = \"" + caUrl + "\"\ntrusted = \"" + (caDir / "ca.cert.pem").string() +
                  "\"\ntimeout_seconds = 3\nvalidity_days = 20\n");
  }

  // The scheduler's row for the test's certificate in `dojang status --json`, or null.
  nlohmann::json rowOfCertificate() {
    for (const auto& entry : renewals()) {
      if (entry["label"] == kLabel) {
        return entry;
      }
    }
    return nullptr;
  }

  std::string stepOfRenewal() const {
    for (const auto& record : history()) {
      if (record["kind"] == "renew") {
        return record["step"];
      }
    }
    return "";
  }

  test::CommandResult run(const std::vector<std::string>& argv) const {
    test::CommandOptions options;
    options.env = env;
    return test::runCommand(argv, options);
  }

  void enrol(const std::string& profile, long long fee) {
    test::enrolFirstCertificate({work.path(), env, token, server->hostPort(), caDir, profile, fee});
  }

  nlohmann::json history() const {
    const auto result = run({dojangCli(), "renew", "--history", "--json"});
    return result.exitCode == 0 ? nlohmann::json::parse(result.out, nullptr, false) : nlohmann::json::array();
  }

  // `dojang status --json`'s scheduler rows; the whole output is kept in lastStatus.
  nlohmann::json renewals() {
    const auto result = run({dojangCli(), "status", "--json"});
    lastStatus = result.out + result.err;
    const auto document = nlohmann::json::parse(result.out, nullptr, false);
    return document.is_object() && document.contains("renewals") ? document["renewals"]
                                                                 : nlohmann::json::array();
  }

  test::SoftHsmToken token;
  test::TempDir work;
  std::filesystem::path caDir;
  std::unique_ptr<catest::CaServer> server;
  std::unique_ptr<test::DojangdProcess> daemon;
  std::map<std::string, std::string> env;
  std::string lastStatus;
  int retireDays = 30;
};

}  // namespace

TEST_CASE("dojangd renews a certificate of a free profile by itself", "[scheduler]") {
  Fixture f("signkorea-securities", 0,
            "[[renewal.auto]]\nprofile = \"signkorea-securities\"\nmax_fee_krw = 0\n");
  // No command: the scheduler sees the certificate inside the window and runs `dojang renew --auto`.
  nlohmann::json renewed;
  const bool done = eventually(
      [&] {
        for (const auto& record : f.history()) {
          if (record["kind"] == "renew" && record["step"] == "retired") {
            renewed = record;
            return true;
          }
        }
        return false;
      },
      std::chrono::seconds(30));
  INFO(f.daemon->log());
  REQUIRE(done);
  CHECK(renewed["certificate"] == kLabel);
  std::vector<std::string> steps;
  for (const auto& event : renewed["events"]) {
    steps.push_back(event["step"]);
  }
  CHECK(steps == std::vector<std::string>{"keygen", "requested", "issued", "stored", "retired"});
  // The token holds the new certificate under the old label, and the retired old one.
  const auto objects =
      f.run({"pkcs11-tool", "--module", test::dojangModulePath(), "--list-objects", "--type", "cert"}).out;
  INFO(objects);
  CHECK(objects.find("signkey (retired ") != std::string::npos);
  CHECK(objects.find("label:      signkey\n") != std::string::npos);
  CHECK(eventually([&] { return f.daemon->log().find("renewed \"signkey\"") != std::string::npos; },
                   std::chrono::seconds(5)));
  // The child ran as a client of this daemon and never inside it.
  CHECK(f.daemon->log().find("inside dojangd") == std::string::npos);
  // `dojang status` shows the old certificate as renewed.
  CHECK(eventually(
      [&] {
        for (const auto& row : f.renewals()) {
          if (row["state"] == "renewed") {
            return true;
          }
        }
        return false;
      },
      std::chrono::seconds(5)));
  INFO(f.lastStatus);
}

TEST_CASE("dojangd only notifies for a paid profile above the fee ceiling", "[scheduler]") {
  test::TempDir bus("dojang-bus-");
  const std::string address = "unix:path=" + (bus / "socket").string();
  test::BackgroundProcess daemon({"dbus-daemon", "--session", "--nofork", "--address=" + address},
                                 bus / "dbus-daemon.log");
  REQUIRE(eventually([&] { return std::filesystem::exists(bus / "socket"); }, std::chrono::seconds(5)));
  test::BackgroundProcess monitor(
      {"dbus-monitor", "--address", address, "interface='org.freedesktop.Notifications'"},
      bus / "monitor.log");
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // the monitor is attached

  Fixture f("signkorea-general-personal", 4400,
            "[[renewal.auto]]\nprofile = \"signkorea-general-personal\"\nmax_fee_krw = 1000\n",
            {{"DBUS_SESSION_BUS_ADDRESS", address}});
  // The Notify method call is on the bus, with the certificate's label in its summary.
  const bool seen = eventually(
      [&] {
        const auto log = readText(bus / "monitor.log");
        return log.find("member=Notify") != std::string::npos &&
               log.find("Certificate \"signkey\" expires in") != std::string::npos;
      },
      std::chrono::seconds(15));
  INFO(readText(bus / "monitor.log"));
  INFO(f.daemon->log());
  CHECK(seen);
  // `dojang status` names the state, and why it was not renewed.
  nlohmann::json row;
  CHECK(eventually(
      [&] {
        for (const auto& entry : f.renewals()) {
          if (entry["label"] == kLabel) {
            row = entry;
            return entry["state"] == "notified 30 days";
          }
        }
        return false;
      },
      std::chrono::seconds(5)));
  INFO(f.lastStatus);
  CHECK(row["detail"].get<std::string>().find("above max_fee_krw = 1000") != std::string::npos);
  CHECK(row["daysLeft"].get<int>() <= 20);
  const auto text = f.run({dojangCli(), "status"}).out;
  CHECK(text.find("notified 30 days") != std::string::npos);
  // Nothing was renewed, nothing was charged.
  for (const auto& record : f.history()) {
    CHECK(record["kind"] != "renew");
  }
}

TEST_CASE("dojangd restarted in the middle of a scheduled renewal finishes it", "[scheduler]") {
  const char* faults = std::getenv("DOJANG_CLI_FAULTS");
  REQUIRE(faults != nullptr);
  // The first daemon's child is the test build with live fault points: it stops itself once the
  // CA's certificate is journalled (step "issued"), before certConf goes out.
  Fixture f("signkorea-securities", 0,
            "dojang_cli = \"" + std::string(faults) +
                "\"\n[[renewal.auto]]\nprofile = \"signkorea-securities\"\nmax_fee_krw = 0\n",
            {{"DOJANG_FAULT_AT", "issued"}, {"DOJANG_FAULT_ACTION", "stop"}});
  const auto stepOfRenewal = [&] { return f.stepOfRenewal(); };
  REQUIRE(eventually([&] { return stepOfRenewal() == "issued"; }, std::chrono::seconds(30)));

  // The daemon dies, and so does its stopped child: nothing finishes the renewal but a restart.
  f.daemon->kill9();
  CHECK(test::runCommand({"pkill", "-KILL", "-f", f.pinFile().string()}).exitCode == 0);
  CHECK(stepOfRenewal() == "issued");
  // The restarted daemon runs the normal dojang: its next `dojang renew --auto` recovers first.
  std::stringstream config;
  config << std::ifstream(f.daemon->configPath()).rdbuf();
  std::string text = config.str();
  const auto at = text.find(faults);
  REQUIRE(at != std::string::npos);
  text.replace(at, std::string(faults).size(), dojangCli());
  writeText(f.daemon->configPath(), text);
  f.daemon->restart();

  REQUIRE(eventually([&] { return stepOfRenewal() == "retired"; }, std::chrono::seconds(30)));
  // One renewal, finished, not a second one started beside it.
  int renewals = 0;
  for (const auto& record : f.history()) {
    renewals += record["kind"] == "renew" ? 1 : 0;
  }
  CHECK(renewals == 1);
  const auto objects =
      f.run({"pkcs11-tool", "--module", test::dojangModulePath(), "--list-objects", "--type", "cert"}).out;
  INFO(objects);
  CHECK(objects.find("signkey (retired ") != std::string::npos);
  CHECK(objects.find("label:      signkey\n") != std::string::npos);
}

TEST_CASE("dojangd retries with backoff while the CA is unreachable, then renews", "[scheduler]") {
  Fixture f("signkorea-securities", 0,
            "[[renewal.auto]]\nprofile = \"signkorea-securities\"\nmax_fee_krw = 0\n", {},
            {closedCaUrl(), 0600});
  // retry_initial_seconds = 1: attempts after about 1, 2 and 4 s, each shown in `dojang status`.
  const bool retried =
      eventually([&] { return f.daemon->log().find("failed (attempt 3), will retry") != std::string::npos; },
                 std::chrono::seconds(30));
  INFO(f.daemon->log());
  REQUIRE(retried);
  const auto row = f.rowOfCertificate();
  INFO(f.lastStatus);
  REQUIRE(row.is_object());
  CHECK(row["state"].get<std::string>().rfind("retrying at ", 0) == 0);
  CHECK(row["detail"].get<std::string>().find("cannot connect to the CA at 127.0.0.1:") != std::string::npos);
  CHECK(row["retryAt"].is_string());
  // The attempts came further apart each time: the second gap is longer than the first.
  const auto log = f.daemon->log();
  CHECK(log.find("failed (attempt 1), will retry") < log.find("failed (attempt 2), will retry"));
  // Every attempt was rolled back: nothing is left between steps, and no new key stays behind.
  for (const auto& record : f.history()) {
    if (record["kind"] == "renew") {
      CHECK(record["step"] == "rolled-back");
    }
  }
  const auto keys = f.run({"pkcs11-tool", "--module", test::dojangModulePath(), "--login", "--pin",
                           f.token.pin(), "--list-objects", "--type", "privkey"})
                        .out;
  INFO(keys);
  CHECK(keys.find("pending") == std::string::npos);

  // The CA is back (renewal.toml names it again): the next retry renews, with no command.
  f.writeRenewalConfig(f.server->url("/"));
  REQUIRE(eventually([&] { return f.stepOfRenewal() == "retired"; }, std::chrono::seconds(40)));
  // The new certificate (20 days, inside the 30-day window at once) is held, not renewed again
  // and charged again at every check.
  CHECK(eventually(
      [&] {
        const auto current = f.rowOfCertificate();
        return current.is_object() &&
               current["detail"].get<std::string>().find("renewed by dojang") != std::string::npos;
      },
      std::chrono::seconds(10)));
  INFO(f.lastStatus);
  std::this_thread::sleep_for(std::chrono::seconds(3));  // three more checks
  int renewed = 0;
  for (const auto& record : f.history()) {
    renewed += record["kind"] == "renew" && record["step"] == "retired" ? 1 : 0;
  }
  CHECK(renewed == 1);
}

TEST_CASE("dojangd names what an automatic renewal waits for: a PIN file it refuses, a token away",
          "[scheduler]") {
  Fixture f("signkorea-securities", 0,
            "[[renewal.auto]]\nprofile = \"signkorea-securities\"\nmax_fee_krw = 0\n", {},
            {std::nullopt, 0644});
  // A PIN file others can read is refused, named in `dojang status` and the log; nothing starts.
  nlohmann::json row;
  CHECK(eventually(
      [&] {
        row = f.rowOfCertificate();
        return row.is_object() && row["state"] == "needs PIN";
      },
      std::chrono::seconds(15)));
  INFO(f.lastStatus);
  INFO(f.daemon->log());
  CHECK(row["detail"].get<std::string>().find("(mode 0644) is refused") != std::string::npos);
  CHECK(f.daemon->log().find("needs a PIN: the PIN file") != std::string::npos);
  CHECK(f.stepOfRenewal().empty());
  const auto text = f.run({dojangCli(), "status"}).out;
  CHECK(text.find("needs PIN") != std::string::npos);

  // The token goes away (dojangd restarted while SoftHSM's token directory is elsewhere): the due
  // renewal waits for it, by name.
  f.daemon->stop();
  const auto tokens = f.token.directory() / "tokens";
  const auto away = f.token.directory() / "tokens-away";
  std::filesystem::rename(tokens, away);
  std::filesystem::create_directories(tokens);
  f.daemon->restart();
  CHECK(eventually(
      [&] {
        row = f.rowOfCertificate();
        return row.is_object() && row["state"] == "waiting for token " + f.token.label();
      },
      std::chrono::seconds(15)));
  CHECK(row["detail"].get<std::string>().rfind("was: needs PIN (the PIN file ", 0) == 0);

  // The token is back and the PIN file is private: the renewal runs by itself.
  f.daemon->stop();
  std::filesystem::remove_all(tokens);
  std::filesystem::rename(away, tokens);
  ::chmod(f.pinFile().c_str(), 0600);
  f.daemon->restart();
  REQUIRE(eventually([&] { return f.stepOfRenewal() == "retired"; }, std::chrono::seconds(30)));
}

TEST_CASE("dojangd deletes a retired pair once retire_days are over, with no renewal running",
          "[scheduler]") {
  Fixture f("signkorea-securities", 0,
            "[[renewal.auto]]\nprofile = \"signkorea-securities\"\nmax_fee_krw = 0\n", {},
            {std::nullopt, 0600, 0});
  REQUIRE(eventually([&] { return f.stepOfRenewal() == "retired"; }, std::chrono::seconds(30)));
  // retire_days = 0: the old pair is due at once; the scheduler's next check deletes it (the new
  // certificate is held, so no renewal does it on the way).
  const auto listing = [&] {
    return f
        .run({"pkcs11-tool", "--module", test::dojangModulePath(), "--login", "--pin", f.token.pin(),
              "--list-objects"})
        .out;
  };
  CHECK(eventually([&] { return listing().find("retired") == std::string::npos; }, std::chrono::seconds(15)));
  INFO(listing());
  INFO(f.daemon->log());
  CHECK(listing().find("ID:         01\n") == std::string::npos);
  CHECK(listing().find("label:      signkey\n") != std::string::npos);
  CHECK(eventually(
      [&] { return f.daemon->log().find("is deleted (its retire days are over)") != std::string::npos; },
      std::chrono::seconds(5)));
  // Once: nothing is due any more, so no further child runs.
  std::this_thread::sleep_for(std::chrono::seconds(2));
  const auto log = f.daemon->log();
  const auto first = log.find("deleting retired pairs past retire_days");
  REQUIRE(first != std::string::npos);
  CHECK(log.find("deleting retired pairs past retire_days", first + 1) == std::string::npos);
}
