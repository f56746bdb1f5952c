// dojangd as a person meets it: the dojang CLI against a real daemon, the daemon's cache seen
// through `dojang status`, and a configuration that names dojang's own module as a backend.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <fstream>
#include <string>

#include "tests/support/dojangd_process.h"
#include "tests/support/run_command.h"
#include "tests/support/softhsm_token.h"
#include "tests/support/temp_dir.h"

namespace {

using dojang::test::CommandResult;
using dojang::test::DojangdProcess;
using dojang::test::dojangModulePath;
using dojang::test::runCommand;
using dojang::test::SoftHsmOptions;
using dojang::test::SoftHsmToken;

std::string cliPath() {
  const char* path = std::getenv("DOJANG_CLI");
  REQUIRE(path != nullptr);
  return path;
}

CommandResult dojangCli(const DojangdProcess& daemon, std::vector<std::string> arguments) {
  arguments.insert(arguments.begin(), cliPath());
  auto env = daemon.env();
  env["DOJANG_MODULE"] = dojangModulePath();
  return runCommand(arguments, env);
}

CommandResult pkcs11Tool(const DojangdProcess& daemon, std::vector<std::string> arguments) {
  arguments.insert(arguments.begin(), {"pkcs11-tool", "--module", dojangModulePath()});
  return runCommand(arguments, daemon.env());
}

}  // namespace

TEST_CASE("dojang tokens, certs and status work through a real dojangd", "[daemon][cli]") {
  SoftHsmToken token(SoftHsmOptions{"dojang-daemon", "1234", "12345678"});
  DojangdProcess daemon(token);

  const auto generated = pkcs11Tool(daemon, {"--login", "--pin", "1234", "--keypairgen", "--key-type",
                                             "EC:prime256v1", "--id", "07", "--label", "seal"});
  REQUIRE(generated.exitCode == 0);

  const auto tokens = dojangCli(daemon, {"tokens", "--json"});
  INFO(tokens.err);
  REQUIRE(tokens.exitCode == 0);
  const auto tokenList = nlohmann::json::parse(tokens.out);
  CHECK(tokenList["module"] == dojangModulePath());
  bool found = false;
  for (const auto& entry : tokenList["tokens"]) {
    found = found || entry["label"] == "dojang-daemon";
  }
  CHECK(found);

  const auto status = dojangCli(daemon, {"status", "--json", "--socket", daemon.socketPath().string()});
  INFO(status.err);
  REQUIRE(status.exitCode == 0);
  const auto report = nlohmann::json::parse(status.out);
  CHECK(report.dump().find("softhsm") != std::string::npos);
  // The object list read for the listings above is kept by the daemon for the next client.
  bool cached = false;
  for (const auto& slot : report["slots"]) {
    if (slot["tokenLabel"] == "dojang-daemon") {
      cached = slot["cachedObjects"].get<int>() >= 1;  // the public key generated above
    }
  }
  CHECK(cached);

  // SoftHSM always offers a spare, uninitialised token: it is "not initialised", with the
  // reason, and every slot names its backend as the configuration does.
  bool spareExplained = false;
  for (const auto& slot : report["slots"]) {
    CHECK(slot["backend"] == report["backends"][0]["name"]);
    if (slot["state"] == "not initialised") {
      spareExplained = slot["problem"].get<std::string>().find("CKR_TOKEN_NOT_RECOGNIZED") != std::string::npos;
    }
  }
  CHECK(spareExplained);
}

TEST_CASE("dojangd refuses to load its own front end as a backend and keeps serving", "[daemon][config]") {
  SoftHsmToken token(SoftHsmOptions{"dojang-loop", "1234", "12345678"});
  DojangdProcess daemon(token);
  REQUIRE(daemon.stop() == 0);
  {
    std::ofstream config(daemon.configPath(), std::ios::app);
    config << "\n[[backend]]\nname = \"loop\"\nmodule = \"" << dojangModulePath() << "\"\n";
  }
  daemon.restart();

  const auto listed = pkcs11Tool(daemon, {"-L"});
  INFO(listed.err << daemon.log());
  REQUIRE(listed.exitCode == 0);
  CHECK(listed.out.find("dojang-loop") != std::string::npos);

  const auto status = dojangCli(daemon, {"status", "--json", "--socket", daemon.socketPath().string()});
  REQUIRE(status.exitCode == 0);
  const auto report = nlohmann::json::parse(status.out);
  bool refused = false;
  for (const auto& backend : report["backends"]) {
    if (backend.value("name", "") == "loop") {
      refused = backend.value("state", "loaded") != "loaded";
    }
  }
  CHECK(refused);
  CHECK(daemon.log().find("not loaded") != std::string::npos);
}
