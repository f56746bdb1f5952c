// `dojang pin status|change|unblock` end to end: the dojang CLI ($DOJANG_CLI) through
// dojang-pkcs11.so against a real dojangd. SoftHSM tokens in prompt mode and in application mode,
// with the PINs from files (mode 0600) or from dojangd's prompt (the test pinentry, whose record
// says what each prompt asked); and the virtual PIV card behind pcscd, whose PIN counts its tries
// (SoftHSM does not), for the exact tries left and the unblocking with the PUK.
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/dojangd_process.h"
#include "tests/support/pcscd_process.h"
#include "tests/support/run_command.h"
#include "tests/support/softhsm_token.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_pinentry.h"

namespace {

using dojang::test::CommandResult;
using dojang::test::DojangdOptions;
using dojang::test::DojangdProcess;
using dojang::test::dojangModulePath;
using dojang::test::SoftHsmToken;
using dojang::test::TempDir;
using dojang::test::TestPinentry;

constexpr const char* kPromptLabel = "dojang-pin";
constexpr const char* kPromptPin = "246810";
constexpr const char* kPromptSoPin = "12345678";
constexpr const char* kClassicLabel = "dojang-classic";
constexpr const char* kClassicPin = "135790";
constexpr const char* kClassicSoPin = "87654321";

constexpr const char* kPivLabel = "PIV card";
constexpr const char* kPivPin = "123456";
constexpr const char* kPivPuk = "12345678";

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

std::string cli() {
  const char* path = std::getenv("DOJANG_CLI");
  if (path == nullptr) {
    throw std::runtime_error("DOJANG_CLI is not set (run through meson test)");
  }
  return path;
}

std::string joined(const std::vector<std::string>& argv) {
  std::string text;
  for (const auto& argument : argv) {
    text += argument + " ";
  }
  return text;
}

// A PIN file as the CLI wants it: mode 0600 unless the test says otherwise.
std::string pinFile(const TempDir& dir, const std::string& name, const std::string& pin,
                    std::filesystem::perms mode = std::filesystem::perms::owner_read |
                                                  std::filesystem::perms::owner_write) {
  const auto path = dir / name;
  dojang::test::writeFile(path, pin + "\n");
  std::filesystem::permissions(path, mode);
  return path.string();
}

// Runs `argv` with the daemon's environment, and a display for dojangd's prompts (the test
// pinentry shows nothing).
CommandResult runWith(const DojangdProcess& daemon, const std::vector<std::string>& argv) {
  dojang::test::CommandOptions options;
  options.env = daemon.env();
  options.env["DISPLAY"] = ":7";
  options.timeout = std::chrono::seconds(60);
  auto result = dojang::test::runCommand(argv, options);
  UNSCOPED_INFO("$ " << joined(argv) << "\nexit " << result.exitCode << "\n" << result.out << result.err);
  return result;
}

std::vector<nlohmann::json> promptsOf(const TestPinentry& pinentry) {
  std::vector<nlohmann::json> seen;
  for (const auto& line : pinentry.prompts()) {
    seen.push_back(nlohmann::json::parse(line));
  }
  return seen;
}

// Two SoftHSM tokens behind one dojangd: kPromptLabel in prompt mode (the default of its [pin]
// table) and kClassicLabel in application mode.
struct SoftHsmBench {
  TempDir dir{"pin-command-"};
  SoftHsmToken token{{kPromptLabel, kPromptPin, kPromptSoPin}};
  TestPinentry pinentry{dir / "pinentry"};
  std::optional<DojangdProcess> daemon;

  SoftHsmBench() {
    (void)token.addToken(kClassicLabel, kClassicPin, kClassicSoPin);
    daemon.emplace(
        token,
        DojangdOptions{"", "", pinentry.env(),
                       TestPinentry::pinSettings("mode = \"prompt\"\ntimeout_seconds = 30\n") +
                           "[[pin.token]]\nlabel = \"" + kClassicLabel + "\"\nmode = \"application\"\n"});
  }

  CommandResult dojang(std::vector<std::string> arguments) const {
    arguments.insert(arguments.begin(), cli());
    return runWith(*daemon, arguments);
  }
  // Whether pkcs11-tool logs in to `label` with `pin` (C_Login with the PIN, as classic tools do).
  bool logsIn(const std::string& label, const std::string& pin) const {
    return runWith(*daemon, {"pkcs11-tool", "--module", dojangModulePath(), "--token-label", label, "--login",
                             "--pin", pin, "--list-objects"})
               .exitCode == 0;
  }
};

}  // namespace

TEST_CASE("dojang pin status: each token's PIN mode and the state of its PINs", "[integration][pin][cli]") {
  SoftHsmBench bench;
  const auto text = bench.dojang({"pin", "status"});
  REQUIRE(text.exitCode == 0);
  CHECK(contains(text.out, "PIN MODE"));
  CHECK(contains(text.out, "prompt (dojangd asks)"));
  CHECK(contains(text.out, "application (the program asks)"));
  CHECK(contains(text.out, kPromptLabel));
  CHECK(contains(text.out, kClassicLabel));

  const auto json = bench.dojang({"pin", "status", "--json"});
  REQUIRE(json.exitCode == 0);
  const auto document = nlohmann::json::parse(json.out);
  REQUIRE(document["tokens"].size() == 2);
  for (const auto& token : document["tokens"]) {
    INFO(token.dump());
    CHECK(token["mode"] == (token["label"] == kPromptLabel ? "prompt" : "application"));
    CHECK(token["userPin"]["state"] == "ok");
    CHECK(token["userPin"]["retriesLeft"].is_null());  // SoftHSM does not count its tries
    CHECK(token["soPin"]["state"] == "ok");
    CHECK(token["exactCounts"] == true);  // dojangd answered; it just has no counts to give
  }

  const auto one = bench.dojang({"pin", "status", "--json", "--token", kClassicLabel});
  REQUIRE(one.exitCode == 0);
  CHECK(nlohmann::json::parse(one.out)["tokens"].size() == 1);
  const auto none = bench.dojang({"pin", "status", "--token", "no such token"});
  CHECK(none.exitCode == 1);
  CHECK(contains(none.err, "no token labelled \"no such token\""));
}

TEST_CASE("dojang pin change with PIN files: the old PIN is refused afterwards, the new one works",
          "[integration][pin][cli]") {
  SoftHsmBench bench;
  const auto oldPin = pinFile(bench.dir, "old", kPromptPin);
  const auto newPin = pinFile(bench.dir, "new", "975311");

  SECTION("files others can read are refused, and both files are needed") {
    const auto open = pinFile(bench.dir, "open", kPromptPin,
                              std::filesystem::perms::owner_read | std::filesystem::perms::owner_write |
                                  std::filesystem::perms::group_read | std::filesystem::perms::others_read);
    const auto refused = bench.dojang(
        {"pin", "change", "--token", kPromptLabel, "--pin-file", open, "--new-pin-file", newPin});
    CHECK(refused.exitCode == 2);
    CHECK(contains(refused.err, "readable by others"));
    const auto half = bench.dojang({"pin", "change", "--token", kPromptLabel, "--pin-file", oldPin});
    CHECK(half.exitCode == 2);
    CHECK(contains(half.err, "--new-pin-file is needed with --pin-file"));
    const auto several = bench.dojang({"pin", "change", "--pin-file", oldPin, "--new-pin-file", newPin});
    CHECK(several.exitCode == 2);
    CHECK(contains(several.err, "choose one with --token"));
    CHECK(bench.logsIn(kPromptLabel, kPromptPin));
  }

  SECTION("changed") {
    const auto changed = bench.dojang(
        {"pin", "change", "--token", kPromptLabel, "--pin-file", oldPin, "--new-pin-file", newPin, "--json"});
    REQUIRE(changed.exitCode == 0);
    const auto document = nlohmann::json::parse(changed.out);
    CHECK(document["changed"] == true);
    CHECK(document["token"] == kPromptLabel);
    CHECK_FALSE(bench.logsIn(kPromptLabel, kPromptPin));
    CHECK(bench.logsIn(kPromptLabel, "975311"));
    CHECK(bench.pinentry.starts() == 0);  // files: dojangd asked nothing
  }

  SECTION("a wrong current PIN: non-zero exit, and the message says so") {
    const auto wrong = pinFile(bench.dir, "wrong", "000000");
    const auto failed = bench.dojang(
        {"pin", "change", "--token", kPromptLabel, "--pin-file", wrong, "--new-pin-file", newPin});
    CHECK(failed.exitCode == 1);
    CHECK(contains(failed.err, "wrong PIN for token \"dojang-pin\""));
    CHECK(contains(failed.err, "nothing was changed"));
    const auto json = bench.dojang(
        {"pin", "change", "--token", kPromptLabel, "--pin-file", wrong, "--new-pin-file", newPin, "--json"});
    CHECK(json.exitCode == 1);
    CHECK(nlohmann::json::parse(json.err)["rv"] == "CKR_PIN_INCORRECT");
    CHECK(bench.logsIn(kPromptLabel, kPromptPin));
  }
}

TEST_CASE("dojang pin change through dojangd's prompt: the current PIN, then the new one typed twice",
          "[integration][pin][cli][prompt]") {
  SoftHsmBench bench;
  SECTION("changed") {
    bench.pinentry.answers({std::string("pin:") + kPromptPin, "pin:864200"});
    const auto changed = bench.dojang({"pin", "change", "--token", kPromptLabel});
    REQUIRE(changed.exitCode == 0);
    CHECK(contains(changed.out, "Changed the PIN of token \"dojang-pin\""));
    const auto prompts = promptsOf(bench.pinentry);
    REQUIRE(prompts.size() == 2);
    const std::string current = prompts[0]["desc"];
    CHECK(contains(current, "dojang (pid "));
    CHECK(contains(current, "wants to change the PIN of token dojang-pin"));
    CHECK(contains(current, "Type the current PIN"));
    CHECK(prompts[0]["prompt"] == "Current PIN:");
    CHECK_FALSE(prompts[0].contains("repeat"));
    const std::string fresh = prompts[1]["desc"];
    CHECK(contains(fresh, "Type the new PIN"));
    CHECK(prompts[1]["prompt"] == "New PIN:");
    CHECK(prompts[1].contains("repeat"));  // SETREPEAT: pinentry asks for it twice
    CHECK(prompts[1]["repeaterror"] == "The PINs do not match.");
    CHECK_FALSE(bench.logsIn(kPromptLabel, kPromptPin));
    CHECK(bench.logsIn(kPromptLabel, "864200"));
  }
  SECTION("a wrong current PIN, typed into the prompt") {
    bench.pinentry.answers({"pin:000000", "pin:864200"});
    const auto failed = bench.dojang({"pin", "change", "--token", kPromptLabel});
    CHECK(failed.exitCode == 1);
    CHECK(contains(failed.err, "wrong PIN for token \"dojang-pin\""));
    CHECK(bench.logsIn(kPromptLabel, kPromptPin));
  }
  SECTION("cancelled") {
    bench.pinentry.answers({"cancel"});
    const auto failed = bench.dojang({"pin", "change", "--token", kPromptLabel});
    CHECK(failed.exitCode == 1);
    CHECK(contains(failed.err, "the PIN prompt was cancelled; nothing was changed"));
    CHECK(bench.pinentry.prompts().size() == 1);
    CHECK(bench.logsIn(kPromptLabel, kPromptPin));
  }
  SECTION("an application-mode token is asked for too") {
    bench.pinentry.answers({std::string("pin:") + kClassicPin, "pin:112233"});
    REQUIRE(bench.dojang({"pin", "change", "--token", kClassicLabel}).exitCode == 0);
    CHECK(bench.logsIn(kClassicLabel, "112233"));
  }
}

TEST_CASE("dojang pin unblock through dojangd's prompt: the SO PIN, then the new PIN twice",
          "[integration][pin][cli][prompt]") {
  SoftHsmBench bench;
  // Application mode: C_Login(CKU_SO, NULL) on a token without a PIN pad lets dojangd ask too.
  const char* label = GENERATE(kClassicLabel, kPromptLabel);
  const std::string soPin = label == std::string(kClassicLabel) ? kClassicSoPin : kPromptSoPin;
  INFO(label);
  bench.pinentry.answers({"pin:" + soPin, "pin:445566"});
  const auto unblocked = bench.dojang({"pin", "unblock", "--token", label});
  REQUIRE(unblocked.exitCode == 0);
  CHECK(contains(unblocked.out, "Unblocked token"));
  const auto prompts = promptsOf(bench.pinentry);
  REQUIRE(prompts.size() == 2);
  CHECK(prompts[0]["prompt"] == "SO PIN:");
  CHECK(contains(prompts[0]["desc"].get<std::string>(), "log in as security officer"));
  CHECK(prompts[1]["prompt"] == "New PIN:");
  CHECK(contains(prompts[1]["desc"].get<std::string>(), "wants to reset the PIN of token"));
  CHECK(prompts[1].contains("repeat"));
  CHECK(bench.logsIn(label, "445566"));
}

namespace {

// pcscd with a reader of its own, the virtual PIV card in it, and dojangd serving the reader
// through its PIV driver (in application mode; SoftHSM beside it, as a test daemon always has).
struct PivBench {
  dojang::test::PcscdLock lock;
  TempDir dir{"pin-command-piv-"};
  TestPinentry pinentry{dir / "pinentry"};
  dojang::test::PcscdProcess pcscd{dir.path(), "dojang pin command test"};
  dojang::test::VirtualPivCard card{dir.path()};
  SoftHsmToken softhsm;
  DojangdProcess daemon{
      softhsm, DojangdOptions{"", "[piv]\nenabled = true\nreaders = [\"dojang pin command test*\"]\n",
                              pinentry.env(), TestPinentry::pinSettings(dojang::test::kApplicationPinMode)}};

  PivBench() {
    card.start(pcscd.port(), dir / "card.state", {});
    REQUIRE(card.waitUntilPresent(pcscd.readerName()));
    for (int attempt = 0; attempt < 100; ++attempt) {
      if (contains(tool({"--list-token-slots"}).out, kPivLabel)) {
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    FAIL("dojangd never showed the PIV card\n" << daemon.log());
  }

  CommandResult tool(std::vector<std::string> arguments) const {
    arguments.insert(arguments.begin(),
                     {"pkcs11-tool", "--module", dojangModulePath(), "--token-label", kPivLabel});
    return runWith(daemon, arguments);
  }
  CommandResult dojang(std::vector<std::string> arguments) const {
    arguments.insert(arguments.begin(), cli());
    arguments.insert(arguments.end(), {"--token", kPivLabel});
    return runWith(daemon, arguments);
  }
  nlohmann::json userPin() const {
    const auto status = dojang({"pin", "status", "--json"});
    REQUIRE(status.exitCode == 0);
    const auto document = nlohmann::json::parse(status.out);
    REQUIRE(document["tokens"].size() == 1);
    return document["tokens"][0]["userPin"];
  }
};

}  // namespace

TEST_CASE("dojang pin on a PIV card: the exact tries left, a locked PIN, unblocked with the PUK",
          "[integration][pin][cli][piv]") {
  PivBench bench;
  CHECK(bench.userPin()["retriesLeft"] == 3);
  CHECK(bench.tool({"--login", "--pin", "000000", "--list-objects"}).exitCode != 0);
  const auto afterOne = bench.dojang({"pin", "status"});
  REQUIRE(afterOne.exitCode == 0);
  CHECK(contains(afterOne.out, "count low: 2 tries left"));
  CHECK(contains(afterOne.out, "application"));
  CHECK(bench.userPin()["retriesLeft"] == 2);
  CHECK(bench.userPin()["state"] == "count low");

  // A wrong current PIN to `pin change` says how many tries are left now.
  const auto newPin = pinFile(bench.dir, "new", "654321");
  const auto wrongChange = bench.dojang(
      {"pin", "change", "--pin-file", pinFile(bench.dir, "wrong", "000000"), "--new-pin-file", newPin});
  CHECK(wrongChange.exitCode == 1);
  CHECK(contains(wrongChange.err,
                 "wrong PIN for token \"PIV card\" (1 try left: one more wrong PIN locks it)"));
  CHECK(bench.userPin()["state"] == "final try");

  CHECK(bench.tool({"--login", "--pin", "000000", "--list-objects"}).exitCode != 0);
  const auto locked = bench.dojang({"pin", "status"});
  CHECK(contains(locked.out, "LOCKED (use `dojang pin unblock`)"));
  CHECK(bench.userPin()["retriesLeft"] == 0);
  const auto refused = bench.dojang(
      {"pin", "change", "--pin-file", pinFile(bench.dir, "right", kPivPin), "--new-pin-file", newPin});
  CHECK(refused.exitCode == 1);
  CHECK(contains(refused.err, "is locked: unblock it with `dojang pin unblock`"));

  const auto wrongPuk = bench.dojang({"pin", "unblock", "--puk-file",
                                      pinFile(bench.dir, "wrong-puk", "87654321"), "--new-pin-file", newPin});
  CHECK(wrongPuk.exitCode == 1);
  CHECK(contains(wrongPuk.err, "wrong PUK (SO PIN) for token \"PIV card\" ("));
  CHECK(contains(wrongPuk.err, "tries left"));

  const auto unblocked = bench.dojang({"pin", "unblock", "--puk-file", pinFile(bench.dir, "puk", kPivPuk),
                                       "--new-pin-file", newPin, "--json"});
  REQUIRE(unblocked.exitCode == 0);
  CHECK(nlohmann::json::parse(unblocked.out)["unblocked"] == true);
  CHECK(bench.userPin()["state"] == "ok");
  CHECK(bench.userPin()["retriesLeft"] == 3);
  CHECK(bench.tool({"--login", "--pin", "654321", "--list-objects"}).exitCode == 0);
  CHECK(bench.pinentry.starts() == 0);
}
