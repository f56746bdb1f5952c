// Prompt mode over a fake token (TokenState): stand-in private keys found and read before any
// login, the real key behind them after the prompt, one prompt shared by clients that come while
// it is open, its failure shared too, and the cache policies. Also what the prompt says
// (promptText) and who the kernel says is asking.
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <future>
#include <thread>

#include "src/common/errors/error.h"
#include "src/daemon/config.h"
#include "src/daemon/prompting/pin_prompter.h"
#include "src/daemon/token_state.h"
#include "tests/unit/fake_token.h"

namespace core = dojang::daemon;
namespace test = dojang::test;
namespace token = dojang::token;
using dojang::SecureBytes;

namespace {

constexpr core::ClientNumber kAlice = 1;
constexpr core::ClientNumber kBob = 2;
constexpr auto kPatience = std::chrono::seconds(10);  // only catches hangs
// DER of OID 1.2.840.10045.3.1.7 (prime256v1).
const token::Bytes kP256 = {0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07};

token::Bytes text(const std::string& value) {
  return {value.begin(), value.end()};
}

struct Fixture {
  std::shared_ptr<test::FakeTokenState> fake = std::make_shared<test::FakeTokenState>();
  core::TokenState state{7, std::make_unique<test::FakeToken>(fake)};
  std::unique_ptr<token::TokenSession> session = state.token().openSession();
  token::ObjectId privateKey = 0;
  token::ObjectId publicKey = 0;
  std::atomic<int> asked{0};

  explicit Fixture(core::PinCache cache = core::PinCache::PerConnection) {
    state.setPinMode(core::PinMode::Prompt, cache, std::chrono::seconds(60));
    privateKey = fake->add({{CKA_CLASS, test::fakeUlongBytes(CKO_PRIVATE_KEY)},
                            {CKA_KEY_TYPE, test::fakeUlongBytes(CKK_EC)},
                            {CKA_PRIVATE, test::fakeBoolBytes(true)},
                            {CKA_TOKEN, test::fakeBoolBytes(true)},
                            {CKA_SIGN, test::fakeBoolBytes(true)},
                            {CKA_ID, {0x01}},
                            {CKA_LABEL, text("real key")},
                            {CKA_VALUE, {0xde, 0xad}}});
    publicKey = fake->add({{CKA_CLASS, test::fakeUlongBytes(CKO_PUBLIC_KEY)},
                           {CKA_KEY_TYPE, test::fakeUlongBytes(CKK_EC)},
                           {CKA_PRIVATE, test::fakeBoolBytes(false)},
                           {CKA_TOKEN, test::fakeBoolBytes(true)},
                           {CKA_VERIFY, test::fakeBoolBytes(true)},
                           {CKA_ID, {0x01}},
                           {CKA_LABEL, text("signing key")},
                           {CKA_EC_PARAMS, kP256}});
  }

  std::vector<token::ObjectId> privateKeys(core::ClientNumber client) {
    return state.find(*session, {{CKA_CLASS, test::fakeUlongBytes(CKO_PRIVATE_KEY)}},
                      {client, state.loginOf(client).has_value()});
  }
  core::TokenState::PinAsk answer(const std::string& pin) {
    return [this, pin](const token::PinState&) {
      ++asked;
      return SecureBytes(pin);
    };
  }
  static CK_RV rvOf(const std::function<void()>& call) {
    try {
      call();
    } catch (const dojang::Error& error) {
      return error.rv();
    }
    return CKR_OK;
  }
};

}  // namespace

TEST_CASE(
    "prompt mode: a stand-in private key is found and read before any login, then leads to the real "
    "key",
    "[prompt]") {
  Fixture f;
  CHECK((f.state.description().flags & CKF_LOGIN_REQUIRED) == 0);
  CHECK((f.state.description().flags & CKF_PROTECTED_AUTHENTICATION_PATH) != 0);
  const auto before = f.privateKeys(kAlice);
  REQUIRE(before.size() == 1);
  const auto standIn = before[0];
  CHECK(core::isStandIn(standIn));
  static constexpr CK_ATTRIBUTE_TYPE kTypes[] = {CKA_LABEL, CKA_EC_PARAMS, CKA_SIGN, CKA_VALUE, CKA_MODULUS};
  const auto reads = f.state.read(*f.session, standIn, kTypes, {kAlice, false});
  CHECK(reads[0].value == text("signing key"));
  CHECK(reads[1].value == kP256);
  CHECK(reads[2].value == test::fakeBoolBytes(true));
  CHECK(reads[3].status == CKR_ATTRIBUTE_SENSITIVE);
  CHECK(reads[4].status == CKR_ATTRIBUTE_TYPE_INVALID);
  const auto facts = f.state.factsFor(*f.session, standIn, {kAlice, false});
  CHECK(facts.objectClass == CKO_PRIVATE_KEY);
  CHECK(facts.canSign);

  f.state.promptLogin(kAlice, CKU_USER, f.answer(f.fake->pin), [] {});
  CHECK(f.asked == 1);
  // Logged in, the token shows its real key; dojangd still shows the one stand-in for it.
  CHECK(f.privateKeys(kAlice) == std::vector<token::ObjectId>{standIn});
  CHECK(f.state.realKeyFor(*f.session, standIn) == f.privateKey);
  // The application-mode view of the same token would be the real key itself.
  CHECK(Fixture::rvOf([&] { (void)f.state.realKeyFor(*f.session, standIn + 1); }) == CKR_KEY_HANDLE_INVALID);
}

TEST_CASE("prompt mode: clients that come while a prompt is open wait for it and share its answer",
          "[prompt]") {
  Fixture f;
  std::promise<void> release;
  auto released = release.get_future().share();
  std::atomic<bool> askOpen{false};
  auto first = std::async(std::launch::async, [&] {
    f.state.promptLogin(
        kAlice, CKU_USER,
        [&](const token::PinState&) {
          ++f.asked;
          askOpen = true;
          released.wait();
          return SecureBytes(f.fake->pin);
        },
        [] {});
  });
  while (!askOpen) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  std::atomic<int> ticks{0};
  auto second = std::async(std::launch::async, [&] {
    f.state.promptLogin(kBob, CKU_USER, f.answer("never asked"), [&] { ++ticks; });
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  CHECK(ticks >= 1);  // the waiting call was kept alive
  release.set_value();
  REQUIRE(first.wait_for(kPatience) == std::future_status::ready);
  REQUIRE(second.wait_for(kPatience) == std::future_status::ready);
  first.get();
  second.get();
  CHECK(f.asked == 1);
  CHECK(f.state.loginOf(kAlice) == CKU_USER);
  CHECK(f.state.loginOf(kBob) == CKU_USER);
}

TEST_CASE("prompt mode: a cancelled prompt fails its waiters too, and a wrong PIN is not asked again",
          "[prompt]") {
  Fixture f;
  std::promise<void> release;
  auto released = release.get_future().share();
  std::atomic<bool> askOpen{false};
  auto first = std::async(std::launch::async, [&] {
    return Fixture::rvOf([&] {
      f.state.promptLogin(
          kAlice, CKU_USER,
          [&](const token::PinState&) -> SecureBytes {
            ++f.asked;
            askOpen = true;
            released.wait();
            dojang::fail(CKR_FUNCTION_CANCELED, "cancelled");
          },
          [] {});
    });
  });
  while (!askOpen) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  auto second = std::async(std::launch::async, [&] {
    return Fixture::rvOf([&] { f.state.promptLogin(kBob, CKU_USER, f.answer(f.fake->pin), [] {}); });
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  release.set_value();
  CHECK(first.get() == CKR_FUNCTION_CANCELED);
  CHECK(second.get() == CKR_FUNCTION_CANCELED);
  CHECK(f.asked == 1);

  CHECK(Fixture::rvOf([&] { f.state.promptLogin(kAlice, CKU_USER, f.answer("0000"), [] {}); }) ==
        CKR_PIN_INCORRECT);
  CHECK(f.asked == 2);
  CHECK_FALSE(f.state.loginOf(kAlice));
}

TEST_CASE("prompt mode: with the cache off a prompted login lasts one use; a classic login stays",
          "[prompt]") {
  Fixture f(core::PinCache::Off);
  f.state.promptLogin(kAlice, CKU_USER, f.answer(f.fake->pin), [] {});
  CHECK(f.state.isPromptedLogin(kAlice));
  f.state.endPromptedUse(kAlice);
  CHECK_FALSE(f.state.loginOf(kAlice));
  const SecureBytes pin(f.fake->pin);
  f.state.login(kBob, CKU_USER, &pin);
  f.state.endPromptedUse(kBob);
  CHECK(f.state.loginOf(kBob) == CKU_USER);
}

TEST_CASE("prompt mode: a timed cache lets another client in without a prompt", "[prompt]") {
  Fixture f(core::PinCache::Timed);
  f.state.promptLogin(kAlice, CKU_USER, f.answer(f.fake->pin), [] {});
  f.state.promptLogin(kBob, CKU_USER, f.answer(f.fake->pin), [] {});
  CHECK(f.asked == 1);
  CHECK(f.state.loginOf(kBob) == CKU_USER);
}

TEST_CASE("[pin] in dojangd.toml: mode, program, cache and per-token rules", "[prompt][config]") {
  const auto config = core::parseConfig(R"(
[pin]
mode = "application"
program = "/usr/bin/pinentry-gnome3"
cache = "timed"
cache_seconds = 120
timeout_seconds = 20
tty = "/dev/tty2"
[[pin.token]]
label = "YubiKey*"
mode = "prompt"
)",
                                        "dojangd.toml");
  CHECK(config.pin.defaultMode == core::PinMode::Application);
  CHECK(config.pin.program == "/usr/bin/pinentry-gnome3");
  CHECK(config.pin.cache == core::PinCache::Timed);
  CHECK(config.pin.cacheLifetime == std::chrono::seconds(120));
  CHECK(config.pin.timeout == std::chrono::seconds(20));
  CHECK(config.pin.tty == "/dev/tty2");
  CHECK(config.pin.modeFor("YubiKey PIV #123", "123") == core::PinMode::Prompt);
  CHECK(config.pin.modeFor("SoftHSM", "1") == core::PinMode::Application);
  CHECK(core::parseConfig("", "x").pin.defaultMode == core::PinMode::Prompt);
  const auto errorOf = [](const std::string& toml) {
    return Fixture::rvOf([&] { (void)core::parseConfig(toml, "dojangd.toml"); });
  };
  CHECK(errorOf("[pin]\nmode = \"ask\"\n") == CKR_GENERAL_ERROR);
  CHECK(errorOf("[pin]\ncache = \"forever\"\n") == CKR_GENERAL_ERROR);
  CHECK(errorOf("[pin]\ncache_seconds = 0\n") == CKR_GENERAL_ERROR);
  CHECK(errorOf("[[pin.token]]\nmode = \"prompt\"\n") == CKR_GENERAL_ERROR);
}

TEST_CASE("what the prompt says: program, operation, token, tries left, the last try plainly, Korean",
          "[prompt]") {
  core::PromptNeed need;
  need.operation = "sign";
  need.tokenLabel = "SignKorea token";
  need.pin = token::PinState::fromCounts(3, 3);
  auto said = core::promptText("chromium", 4242, need, "en_US.UTF-8");
  CHECK(said.description == "chromium (pid 4242) wants to sign.\nToken: SignKorea token\n3 tries left.");
  CHECK(said.errorText.empty());
  need.pin = token::PinState::fromCounts(2, 3);
  said = core::promptText("chromium", 4242, need, "en_US.UTF-8");
  CHECK(said.description.find("2 tries left.") != std::string::npos);
  CHECK(said.errorText == "A wrong PIN was entered before. 2 tries left.");
  need.pin = token::PinState::fromCounts(1, 3);
  said = core::promptText("chromium", 4242, need, "en_US.UTF-8");
  CHECK(said.description.find("LAST TRY: one more wrong PIN locks the token.") != std::string::npos);
  said = core::promptText("chromium", 4242, need, "ko_KR.UTF-8");
  CHECK(said.description.find("chromium (pid 4242)이(가) 서명하려고 합니다.") != std::string::npos);
  CHECK(said.description.find("마지막 시도입니다") != std::string::npos);
  need.secret = core::PromptSecret::ManagementKey;
  said = core::promptText("pkcs11-tool", 7, need, "C");
  CHECK(said.prompt == "Management key:");
}

TEST_CASE("who asks is what the kernel says: this test's own executable", "[prompt]") {
  CHECK(core::programOfProcess(::getpid(), "claimed") == "prompt_mode_test");
  CHECK(core::programOfProcess(0, "claimed") == "claimed");
  const auto surface = core::surfaceOfProcess(::getpid());
  CHECK(surface.display == ":prompt-mode-test");  // meson sets it for this test
}
