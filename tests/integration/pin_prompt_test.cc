// dojangd's PIN prompts in prompt mode, end to end: a real dojangd with a SoftHSM token, the test
// pinentry (tests/support/test-pinentry) as [pin] program, and clients that never give a PIN:
// this process through dojang-pkcs11.so, and pkcs11-tool. What a prompt says is read from the
// test pinentry's record (prompts.jsonl); what it answers comes from its `answers` script.
#include <signal.h>
#include <unistd.h>

#include <array>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "src/common/cryptoki/cryptoki.h"
#include "tests/support/background_process.h"
#include "tests/support/dojangd_process.h"
#include "tests/support/p11_calls.h"
#include "tests/support/run_command.h"
#include "tests/support/softhsm_token.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_pinentry.h"

namespace {

using namespace std::chrono_literals;
using dojang::test::BackgroundProcess;
using dojang::test::CommandOptions;
using dojang::test::CommandResult;
using dojang::test::DojangdOptions;
using dojang::test::DojangdProcess;
using dojang::test::DojangModule;
using dojang::test::dojangModulePath;
using dojang::test::findWithId;
using dojang::test::readFile;
using dojang::test::runCommand;
using dojang::test::signP256Once;
using dojang::test::slotWithLabel;
using dojang::test::SoftHsmToken;
using dojang::test::TempDir;
using dojang::test::TestPinentry;
using dojang::test::writeFile;

constexpr const char* kLabel = "dojang-prompt";
constexpr const char* kPin = "246810";
constexpr const char* kOtherLabel = "dojang-classic";
constexpr const char* kOtherPin = "135790";
constexpr const char* kHolder = "홍길동()0001234567890123";
constexpr const char* kSignKoreaPersonal = "1.2.410.200004.5.1.1.5";

CommandResult mustRun(const std::vector<std::string>& argv, const CommandOptions& options = {}) {
  auto result = runCommand(argv, options);
  INFO(argv[0] << " said: " << result.out << result.err);
  REQUIRE(result.exitCode == 0);
  return result;
}

// A prompt-mode dojangd with one EC P-256 key and its SignKorea-style certificate (CKA_ID 01),
// made with the PIN given the classic way; and a second token that stays in application mode.
struct PromptBench {
  TempDir dir{"pin-prompt-"};
  SoftHsmToken token{{kLabel, kPin, "12345678"}};
  TestPinentry pinentry{dir / "pinentry"};
  std::optional<DojangdProcess> daemon;

  explicit PromptBench(const std::string& morePinSettings = "") {
    (void)token.addToken(kOtherLabel, kOtherPin, "87654321");
    daemon.emplace(
        token, DojangdOptions{
                   "", "", pinentry.env(),
                   TestPinentry::pinSettings("mode = \"prompt\"\ntimeout_seconds = 30\n" + morePinSettings) +
                       "[[pin.token]]\nlabel = \"" + kOtherLabel + "\"\nmode = \"application\"\n"});
    daemon->exportEnv();
    makeKeyAndCertificate();
  }

  std::vector<std::string> tool(const std::string& label) const {
    return {"pkcs11-tool", "--module", dojangModulePath(), "--token-label", label};
  }

  void makeKeyAndCertificate() {
    auto keygen = tool(kLabel);
    keygen.insert(keygen.end(), {"--login", "--pin", kPin, "--keypairgen", "--key-type", "EC:prime256v1",
                                 "--id", "01", "--label", "signing key"});
    mustRun(keygen);
    auto readPublic = tool(kLabel);
    readPublic.insert(readPublic.end(), {"--read-object", "--type", "pubkey", "--id", "01", "--output-file",
                                         (dir / "public.der").string()});
    mustRun(readPublic);
    mustRun({"openssl", "pkey", "-pubin", "-inform", "DER", "-in", (dir / "public.der").string(), "-out",
             (dir / "public.pem").string()});
    // A throwaway CA on the host signs a certificate for the token's public key.
    mustRun({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", (dir / "ca.key").string(), "-out", (dir / "ca.pem").string(), "-subj", "/CN=Test CA",
             "-days", "30"});
    writeFile(dir / "ext.cnf", std::string("certificatePolicies = ") + kSignKoreaPersonal + "\n");
    // The request only carries the subject (UTF-8, as Korean CAs write it); its key is the CA's.
    mustRun({"openssl", "req", "-new", "-utf8", "-key", (dir / "ca.key").string(), "-subj",
             std::string("/C=KR/O=SignKorea/OU=personal/CN=") + kHolder, "-out", (dir / "req.pem").string()});
    mustRun({"openssl",
             "x509",
             "-req",
             "-in",
             (dir / "req.pem").string(),
             "-CA",
             (dir / "ca.pem").string(),
             "-CAkey",
             (dir / "ca.key").string(),
             "-CAcreateserial",
             "-force_pubkey",
             (dir / "public.pem").string(),
             "-extfile",
             (dir / "ext.cnf").string(),
             "-days",
             "30",
             "-outform",
             "DER",
             "-out",
             (dir / "cert.der").string()},
            {});
    auto write = tool(kLabel);
    write.insert(write.end(), {"--login", "--pin", kPin, "--write-object", (dir / "cert.der").string(),
                               "--type", "cert", "--id", "01", "--label", "signing certificate"});
    mustRun(write);
    writeFile(dir / "hash", std::string(32, 'h'));
  }

  void answers(const std::vector<std::string>& lines) const { pinentry.answers(lines); }
  [[nodiscard]] std::vector<nlohmann::json> prompts() const {
    std::vector<nlohmann::json> seen;
    for (const auto& line : pinentry.prompts()) {
      seen.push_back(nlohmann::json::parse(line));
    }
    return seen;
  }
  [[nodiscard]] std::size_t pinentryStarts() const { return pinentry.starts(); }

  // pkcs11-tool signing with key 01 and no PIN; `display` is what its environment shows.
  [[nodiscard]] std::vector<std::string> signCommand(const std::string& output) const {
    auto sign = tool(kLabel);
    sign.insert(sign.end(), {"--sign", "--id", "01", "--mechanism", "ECDSA", "--signature-format", "openssl",
                             "--input-file", (dir / "hash").string(), "--output-file", output});
    return sign;
  }
  CommandResult sign(const std::string& display = ":7", const std::string& output = "sig.der") const {
    CommandOptions options;
    options.env = {{"DISPLAY", display}, {"WAYLAND_DISPLAY", ""}, {"GPG_TTY", ""}};
    options.timeout = 60s;
    return runCommand(signCommand((dir / output).string()), options);
  }
  void verify(const std::string& signature = "sig.der") const {
    mustRun({"openssl", "pkeyutl", "-verify", "-pubin", "-inkey", (dir / "public.pem").string(), "-in",
             (dir / "hash").string(), "-sigfile", (dir / signature).string()});
  }
};

std::string promptText(const nlohmann::json& prompt) {
  return prompt.dump();  // every SET* text, unescaped, as JSON
}

bool waitFor(const std::function<bool()>& condition, std::chrono::milliseconds patience) {
  const auto deadline = std::chrono::steady_clock::now() + patience;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) {
      return true;
    }
    std::this_thread::sleep_for(50ms);
  }
  return condition();
}

CK_ULONG ulongAttribute(CK_FUNCTION_LIST& p11, CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object,
                        CK_ATTRIBUTE_TYPE type) {
  CK_ULONG value = 0;
  CK_ATTRIBUTE attribute{type, &value, sizeof value};
  REQUIRE(p11.C_GetAttributeValue(session, object, &attribute, 1) == CKR_OK);
  return value;
}

std::vector<CK_OBJECT_HANDLE> findPrivateKeys(CK_FUNCTION_LIST& p11, CK_SESSION_HANDLE session) {
  return findWithId(p11, session, CKO_PRIVATE_KEY, 0x01);
}

}  // namespace

TEST_CASE("prompt mode: no login is asked, and the private key is found and read without one",
          "[pin][prompt]") {
  PromptBench bench;
  DojangModule module;
  REQUIRE(module.initialize() == CKR_OK);
  auto& p11 = module.functions();
  const auto slot = slotWithLabel(p11, kLabel);
  CK_TOKEN_INFO info{};
  REQUIRE(p11.C_GetTokenInfo(slot, &info) == CKR_OK);
  CHECK((info.flags & CKF_LOGIN_REQUIRED) == 0);
  CHECK((info.flags & CKF_PROTECTED_AUTHENTICATION_PATH) != 0);
  // The application-mode token beside it is as it always was.
  CK_TOKEN_INFO classic{};
  REQUIRE(p11.C_GetTokenInfo(slotWithLabel(p11, kOtherLabel), &classic) == CKR_OK);
  CHECK((classic.flags & CKF_LOGIN_REQUIRED) != 0);

  CK_SESSION_HANDLE session = 0;
  REQUIRE(p11.C_OpenSession(slot, CKF_SERIAL_SESSION, nullptr, nullptr, &session) == CKR_OK);
  const auto keys = findPrivateKeys(p11, session);
  REQUIRE(keys.size() == 1);
  CHECK(ulongAttribute(p11, session, keys[0], CKA_KEY_TYPE) == CKK_EC);
  std::array<CK_BYTE, 32> params{};
  CK_BBOOL canSign = CK_FALSE;
  CK_BBOOL sensitive = CK_FALSE;
  std::array<char, 64> label{};
  std::array<CK_ATTRIBUTE, 4> publicPart{{{CKA_EC_PARAMS, params.data(), params.size()},
                                          {CKA_SIGN, &canSign, sizeof canSign},
                                          {CKA_SENSITIVE, &sensitive, sizeof sensitive},
                                          {CKA_LABEL, label.data(), label.size()}}};
  REQUIRE(p11.C_GetAttributeValue(session, keys[0], publicPart.data(), publicPart.size()) == CKR_OK);
  CHECK(publicPart[0].ulValueLen == 10);  // OID prime256v1
  CHECK(canSign == CK_TRUE);
  CHECK(sensitive == CK_TRUE);
  CHECK(std::string(label.data(), publicPart[3].ulValueLen) == "signing key");
  std::array<CK_BYTE, 64> secret{};
  CK_ATTRIBUTE value{CKA_VALUE, secret.data(), secret.size()};
  CHECK(p11.C_GetAttributeValue(session, keys[0], &value, 1) == CKR_ATTRIBUTE_SENSITIVE);
  CK_SESSION_INFO sessionInfo{};
  REQUIRE(p11.C_GetSessionInfo(session, &sessionInfo) == CKR_OK);
  CHECK(sessionInfo.state == CKS_RO_PUBLIC_SESSION);
  CHECK(bench.pinentryStarts() == 0);  // finding and reading asked nobody
}

TEST_CASE(
    "prompt mode: the first signature asks once, naming the program from the kernel, the holder "
    "and the token; later ones do not ask",
    "[pin][prompt]") {
  PromptBench bench;
  bench.answers({std::string("pin:") + kPin});
  DojangModule module;
  REQUIRE(module.initialize() == CKR_OK);
  auto& p11 = module.functions();
  CK_SESSION_HANDLE session = 0;
  REQUIRE(p11.C_OpenSession(slotWithLabel(p11, kLabel), CKF_SERIAL_SESSION, nullptr, nullptr, &session) ==
          CKR_OK);
  const auto keys = findPrivateKeys(p11, session);
  REQUIRE(keys.size() == 1);
  REQUIRE(signP256Once(p11, session, keys[0]) == CKR_OK);
  REQUIRE(signP256Once(p11, session, keys[0]) == CKR_OK);
  const auto prompts = bench.prompts();
  REQUIRE(prompts.size() == 1);
  const auto text = promptText(prompts[0]);
  INFO(text);
  // This process's own executable name, as /proc/PID/exe says: the module's Hello is not asked.
  CHECK(text.find("pin_prompt_test (pid " + std::to_string(::getpid()) + ")") != std::string::npos);
  CHECK(text.find("wants to sign as " + std::string(kHolder) + " (SignKorea 범용 개인)") !=
        std::string::npos);
  CHECK(text.find(std::string("Token: ") + kLabel) != std::string::npos);
  CHECK(prompts[0].dump().find(":dojang-test") != std::string::npos);  // this process's DISPLAY
  // The other token in application mode still wants C_Login: the prompt covers nothing else.
  CK_SESSION_HANDLE classic = 0;
  REQUIRE(p11.C_OpenSession(slotWithLabel(p11, kOtherLabel), CKF_SERIAL_SESSION, nullptr, nullptr,
                            &classic) == CKR_OK);
  CK_SESSION_INFO classicInfo{};
  REQUIRE(p11.C_GetSessionInfo(classic, &classicInfo) == CKR_OK);
  CHECK(classicInfo.state == CKS_RO_PUBLIC_SESSION);

  // pkcs11-tool, another client, gets its own prompt, with its own name.
  bench.answers({std::string("pin:") + kPin});
  const auto signedByTool = bench.sign();
  INFO(signedByTool.out << signedByTool.err);
  REQUIRE(signedByTool.exitCode == 0);
  bench.verify();
  const auto after = bench.prompts();
  REQUIRE(after.size() == 2);
  CHECK(promptText(after[1]).find("pkcs11-tool (pid ") != std::string::npos);
}

TEST_CASE("prompt mode: cancel and a wrong PIN fail that use only, never retried; the next use asks again",
          "[pin][prompt]") {
  PromptBench bench;
  bench.answers({"cancel", "pin:000000", std::string("pin:") + kPin});
  DojangModule module;
  REQUIRE(module.initialize() == CKR_OK);
  auto& p11 = module.functions();
  CK_SESSION_HANDLE session = 0;
  REQUIRE(p11.C_OpenSession(slotWithLabel(p11, kLabel), CKF_SERIAL_SESSION, nullptr, nullptr, &session) ==
          CKR_OK);
  const auto key = findPrivateKeys(p11, session).at(0);
  CHECK(signP256Once(p11, session, key) == CKR_FUNCTION_CANCELED);
  CHECK(bench.prompts().size() == 1);
  CHECK(signP256Once(p11, session, key) == CKR_PIN_INCORRECT);
  CHECK(bench.prompts().size() == 2);  // one prompt for the wrong PIN: not asked again by itself
  CHECK(signP256Once(p11, session, key) == CKR_OK);
  CHECK(bench.prompts().size() == 3);
  CHECK(bench.daemon->log().find("cancelled") != std::string::npos);
}

TEST_CASE(
    "prompt mode: a prompt nobody answers holds up neither another client's find nor another "
    "token's signature, and ends when its client goes away",
    "[pin][prompt]") {
  PromptBench bench;
  bench.answers({"hang"});
  BackgroundProcess waiting(bench.signCommand((bench.dir / "never.der").string()), bench.dir / "waiting.log");
  // The prompt is open once the test pinentry has recorded it (it starts a moment before).
  REQUIRE(waitFor([&] { return bench.prompts().size() == 1; }, 20s));
  const auto prompts = bench.prompts();

  DojangModule module;
  REQUIRE(module.initialize() == CKR_OK);
  auto& p11 = module.functions();
  CK_SESSION_HANDLE session = 0;
  const auto started = std::chrono::steady_clock::now();
  REQUIRE(p11.C_OpenSession(slotWithLabel(p11, kLabel), CKF_SERIAL_SESSION, nullptr, nullptr, &session) ==
          CKR_OK);
  CHECK(findPrivateKeys(p11, session).size() == 1);
  // The application-mode token: C_Login and a signature while the other prompt stays open.
  CK_SESSION_HANDLE classic = 0;
  REQUIRE(p11.C_OpenSession(slotWithLabel(p11, kOtherLabel), CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr,
                            nullptr, &classic) == CKR_OK);
  std::string pin = kOtherPin;
  REQUIRE(p11.C_Login(classic, CKU_USER, reinterpret_cast<CK_UTF8CHAR*>(pin.data()), pin.size()) == CKR_OK);
  CK_MECHANISM keygen{CKM_EC_KEY_PAIR_GEN, nullptr, 0};
  std::array<CK_BYTE, 10> p256{0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07};
  CK_BBOOL yes = CK_TRUE;
  std::array<CK_ATTRIBUTE, 1> publicTemplate{{{CKA_EC_PARAMS, p256.data(), p256.size()}}};
  std::array<CK_ATTRIBUTE, 1> privateTemplate{{{CKA_SIGN, &yes, sizeof yes}}};
  CK_OBJECT_HANDLE publicKey = 0;
  CK_OBJECT_HANDLE privateKey = 0;
  REQUIRE(p11.C_GenerateKeyPair(classic, &keygen, publicTemplate.data(), publicTemplate.size(),
                                privateTemplate.data(), privateTemplate.size(), &publicKey,
                                &privateKey) == CKR_OK);
  CHECK(signP256Once(p11, classic, privateKey) == CKR_OK);
  // Generous: only a hang (this work waiting for the open prompt) would come near it.
  CHECK(std::chrono::steady_clock::now() - started < 15s);
  CHECK(waiting.running());

  // The waiting client leaves: its pinentry is stopped, and the daemon says why.
  const int pinentryPid = prompts.at(0).at("pid").get<int>();
  (void)waiting.stop(100ms);
  CHECK(waitFor([&] { return ::kill(pinentryPid, 0) != 0; }, 10s));
  CHECK(waitFor([&] { return bench.daemon->log().find("the client went away") != std::string::npos; }, 10s));
}

TEST_CASE("prompt mode: private operations of several clients at once wait for one prompt", "[pin][prompt]") {
  PromptBench bench;
  // The second client starts once the first one's prompt is open, which then stays open 4 s.
  bench.answers({std::string("sleep:4:then-pin:") + kPin});
  CommandResult first;
  CommandResult second;
  std::thread one([&] { first = bench.sign(":7", "one.der"); });
  CHECK(waitFor([&] { return bench.pinentryStarts() == 1; }, 20s));  // no REQUIRE: `one` runs
  std::thread two([&] { second = bench.sign(":7", "two.der"); });
  one.join();
  two.join();
  INFO(first.out << first.err << second.out << second.err);
  CHECK(first.exitCode == 0);
  CHECK(second.exitCode == 0);
  CHECK(bench.pinentryStarts() == 1);
  bench.verify("one.der");
  bench.verify("two.der");
}

TEST_CASE("prompt mode: with no display and no terminal the operation fails at once, with one log line",
          "[pin][prompt]") {
  PromptBench bench;
  bench.answers({std::string("pin:") + kPin});
  const auto started = std::chrono::steady_clock::now();
  const auto result = bench.sign("");
  INFO(result.out << result.err);
  CHECK(result.exitCode != 0);
  CHECK(result.err.find("CKR_FUNCTION_FAILED") != std::string::npos);
  CHECK(std::chrono::steady_clock::now() - started < 10s);
  CHECK(bench.pinentryStarts() == 0);
  const auto log = bench.daemon->log();
  std::size_t lines = 0;
  for (std::size_t at = log.find("no display or terminal to ask on"); at != std::string::npos;
       at = log.find("no display or terminal to ask on", at + 1)) {
    ++lines;
  }
  INFO(log);
  // One line per attempt, naming the program and the token; pkcs11-tool tries C_Sign, then
  // C_SignUpdate and C_SignFinal.
  CHECK(lines >= 1);
  CHECK(lines <= 2);
  CHECK(log.find("PIN prompt for pkcs11-tool on token \"" + std::string(kLabel) + "\": no display") !=
        std::string::npos);
}

TEST_CASE("prompt mode: cache off asks at every use; C_Login without a PIN asks through pinentry",
          "[pin][prompt]") {
  PromptBench bench("cache = \"off\"\n");
  bench.answers({std::string("pin:") + kPin, std::string("pin:") + kPin, std::string("pin:") + kPin});
  DojangModule module;
  REQUIRE(module.initialize() == CKR_OK);
  auto& p11 = module.functions();
  CK_SESSION_HANDLE session = 0;
  REQUIRE(p11.C_OpenSession(slotWithLabel(p11, kLabel), CKF_SERIAL_SESSION, nullptr, nullptr, &session) ==
          CKR_OK);
  const auto key = findPrivateKeys(p11, session).at(0);
  REQUIRE(signP256Once(p11, session, key) == CKR_OK);
  REQUIRE(signP256Once(p11, session, key) == CKR_OK);
  CHECK(bench.prompts().size() == 2);
  // The protected authentication path: a NULL PIN lets dojangd ask.
  REQUIRE(p11.C_Login(session, CKU_USER, nullptr, 0) == CKR_OK);
  CHECK(bench.prompts().size() == 3);
  CHECK(promptText(bench.prompts().back()).find("wants to log in") != std::string::npos);
  CK_SESSION_INFO info{};
  REQUIRE(p11.C_GetSessionInfo(session, &info) == CKR_OK);
  CHECK(info.state == CKS_RO_USER_FUNCTIONS);
}
