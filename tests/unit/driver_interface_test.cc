// What the driver interface tells the daemon and what the daemon does with it, over the fake
// token: PIN state as token flags, wrong PINs with their tries left, a login the token lost, a
// token removed during an operation, the context-specific PIN and key-generation targets.
#include <catch2/catch.hpp>
#include <winscard.h>

#include "src/common/errors/error.h"
#include "src/common/errors/foreign_errors.h"
#include "src/daemon/service.h"
#include "src/daemon/slot_table.h"
#include "tests/unit/fake_daemon.h"
#include "tests/unit/fake_token.h"

namespace core = dojang::daemon;
namespace test = dojang::test;
namespace token = dojang::token;
namespace wire = dojang::wire;

namespace {

using test::rvOf;

constexpr std::uint64_t kSlot = 1;
constexpr std::uint64_t kReadWrite = CKF_SERIAL_SESSION | CKF_RW_SESSION;

wire::Bytes bytesOf(const std::string& text) { return wire::Bytes(text.begin(), text.end()); }

// One daemon over one fake token in slot 1.
struct Daemon : test::FakeDaemon {
  Daemon() : FakeDaemon("driver_interface_test") {}
  CK_RV login(core::CallContext& context, std::uint64_t session, const std::string& pin = "1234",
              CK_USER_TYPE user = CKU_USER) {
    wire::Empty out;
    return rvOf([&] { service->Login(context, {session, user, true, bytesOf(pin)}, out); });
  }
  CK_RV loginContextSpecific(core::CallContext& context, std::uint64_t session, const std::string& pin) {
    wire::Empty out;
    return rvOf([&] { service->LoginContextSpecific(context, {session, CKU_CONTEXT_SPECIFIC, true, bytesOf(pin)}, out); });
  }
  CK_RV sign(core::CallContext& context, std::uint64_t session, std::uint64_t key) {
    wire::DataReply out;
    wire::KeyOperationRequest request;
    request.session = session;
    request.mechanism.type = CKM_ECDSA;
    request.key = key;
    request.data = wire::Bytes(32, 0x42);
    return rvOf([&] { service->Sign(context, request, out); });
  }
  CK_RV find(core::CallContext& context, std::uint64_t session) {
    wire::FindObjectsReply out;
    return rvOf([&] { service->FindObjects(context, {session, {}}, out); });
  }
  std::uint64_t sessionState(core::CallContext& context, std::uint64_t session) {
    wire::GetSessionInfoReply out;
    service->GetSessionInfo(context, {session}, out);
    return out.info.state;
  }
  CK_FLAGS tokenFlags(core::CallContext& context) {
    wire::GetTokenInfoReply out;
    service->GetTokenInfo(context, {kSlot}, out);
    return out.info.flags;
  }
};

}  // namespace

TEST_CASE("C_GetTokenInfo's PIN flags come from the token's PIN state", "[driver][flags]") {
  Daemon d;
  d.fake->maxPinTries = 3;
  auto client = d.client();
  const auto session = d.open(client);
  constexpr CK_FLAGS kUser = CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY | CKF_USER_PIN_LOCKED;
  constexpr CK_FLAGS kSo = CKF_SO_PIN_COUNT_LOW | CKF_SO_PIN_FINAL_TRY | CKF_SO_PIN_LOCKED;
  CHECK((d.tokenFlags(client) & (kUser | kSo)) == 0);

  REQUIRE(d.login(client, session, "0000") == CKR_PIN_INCORRECT);
  CHECK((d.tokenFlags(client) & (kUser | kSo)) == CKF_USER_PIN_COUNT_LOW);
  REQUIRE(d.login(client, session, "0000") == CKR_PIN_INCORRECT);
  CHECK((d.tokenFlags(client) & (kUser | kSo)) == (CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY));
  REQUIRE(d.login(client, session, "0000") == CKR_PIN_INCORRECT);
  CHECK((d.tokenFlags(client) & CKF_USER_PIN_LOCKED) != 0);
  CHECK(d.login(client, session) == CKR_PIN_LOCKED);

  // The SO PIN has flags of its own.
  REQUIRE(d.login(client, session, "00000000", CKU_SO) == CKR_PIN_INCORRECT);
  CHECK((d.tokenFlags(client) & kSo) == CKF_SO_PIN_COUNT_LOW);
}

TEST_CASE("a wrong PIN carries the tries the token has left", "[driver][login]") {
  Daemon d;
  d.fake->maxPinTries = 5;
  auto client = d.client();
  const auto session = d.open(client);
  auto token = d.slots->tokenIn(kSlot);
  const dojang::SecureBytes wrong(std::string_view("0000"));
  try {
    token->login(client.client->number(), CKU_USER, &wrong);
    FAIL("a wrong PIN was accepted");
  } catch (const dojang::Error& error) {
    CHECK(error.rv() == CKR_PIN_INCORRECT);
    CHECK(error.kind() == dojang::ErrorKind::PinIncorrect);
    REQUIRE(error.pinRetriesLeft().has_value());
    CHECK(*error.pinRetriesLeft() == 4);
  }
  CHECK(d.login(client, session) == CKR_OK);
}

TEST_CASE("a login the token lost ends every client's login; logging in again works", "[driver][login]") {
  Daemon d;
  const auto key = d.fake->addPrivateKey(CKK_EC, "key");
  auto alice = d.client();
  auto bob = d.client();
  const auto aliceSession = d.open(alice);
  const auto bobSession = d.open(bob);
  REQUIRE(d.login(alice, aliceSession) == CKR_OK);
  REQUIRE(d.login(bob, bobSession) == CKR_OK);
  REQUIRE(d.sign(alice, aliceSession, key) == CKR_OK);
  const int tokenLogins = d.fake->loginCalls;

  SECTION("another program resets the card (ErrorKind::LoginLost)") { d.fake->resetCard(); }
  SECTION("the token says CKR_USER_NOT_LOGGED_IN") {
    std::lock_guard lock(d.fake->mutex);
    d.fake->loggedIn = false;
  }

  CHECK(d.sign(alice, aliceSession, key) == CKR_USER_NOT_LOGGED_IN);
  // Bob's login ended too: he is told so by the daemon, the token is not asked.
  CHECK(d.sessionState(bob, bobSession) == CKS_RW_PUBLIC_SESSION);
  CHECK(d.sessionState(alice, aliceSession) == CKS_RW_PUBLIC_SESSION);
  // Private objects are hidden from him again, keys included, and private use wants a login.
  CHECK(d.sign(bob, bobSession, key) == CKR_KEY_HANDLE_INVALID);
  wire::GenerateKeyPairReply generated;
  CHECK(rvOf([&] { d.service->GenerateKeyPair(bob, {bobSession, {CKM_EC_KEY_PAIR_GEN}, {}, {}}, generated); }) ==
        CKR_USER_NOT_LOGGED_IN);
  CHECK(d.slots->tokenIn(kSlot)->loggedInClientCount() == 0);

  // The next login is checked by the token itself, and private use works again.
  CHECK(d.login(bob, bobSession) == CKR_OK);
  CHECK(d.fake->loginCalls == tokenLogins + 1);
  CHECK(d.sign(bob, bobSession, key) == CKR_OK);
  CHECK(d.login(alice, aliceSession, "0000") == CKR_PIN_INCORRECT);  // checked against the new login
  CHECK(d.login(alice, aliceSession) == CKR_OK);
  CHECK(d.sign(alice, aliceSession, key) == CKR_OK);
}

TEST_CASE("a token removed during an operation is marked removed at once and rescanned", "[driver][removal]") {
  Daemon d;
  const auto key = d.fake->addPrivateKey(CKK_EC, "key");
  auto alice = d.client();
  auto bob = d.client();
  const auto aliceSession = d.open(alice);
  const auto bobSession = d.open(bob);
  REQUIRE(d.login(alice, aliceSession) == CKR_OK);
  auto cursor = d.slots->eventCursor();

  SECTION("the token is gone from its slot") {
    d.driver->setTokenPresent("a", false);
    {
      std::lock_guard lock(d.fake->mutex);
      d.fake->removedWith = CKR_TOKEN_NOT_PRESENT;
    }
    CHECK(d.sign(alice, aliceSession, key) == CKR_DEVICE_REMOVED);
    // No monitor runs here: the failing call itself rescanned the driver.
    CHECK(d.slots->slotIds(true).empty());
    CHECK(d.slots->nextEvent(cursor, std::chrono::milliseconds(0)) == kSlot);
    CHECK(rvOf([&] { (void)d.slots->tokenIn(kSlot); }) == CKR_TOKEN_NOT_PRESENT);
    CHECK(d.find(bob, bobSession) == CKR_DEVICE_REMOVED);
    CHECK(d.sign(alice, aliceSession, key) == CKR_DEVICE_REMOVED);
    wire::OpenSessionReply out;
    CHECK(rvOf([&] { d.service->OpenSession(bob, {kSlot, kReadWrite}, out); }) == CKR_TOKEN_NOT_PRESENT);
  }

  SECTION("the slot holds a token again when the rescan looks") {
    {
      std::lock_guard lock(d.fake->mutex);
      d.fake->removedWith = CKR_DEVICE_REMOVED;
    }
    const int opened = d.driver->openCalls;
    CHECK(d.find(bob, bobSession) == CKR_DEVICE_REMOVED);
    CHECK(d.driver->openCalls == opened + 1);  // the rescan opened the token afresh
    {
      std::lock_guard lock(d.fake->mutex);
      d.fake->removedWith = CKR_OK;
    }
    // Sessions on the old token stay dead; a new session works, without a login.
    CHECK(d.sign(alice, aliceSession, key) == CKR_DEVICE_REMOVED);
    CHECK(d.find(bob, bobSession) == CKR_DEVICE_REMOVED);
    auto fresh = d.client();
    const auto freshSession = d.open(fresh);
    CHECK(d.find(fresh, freshSession) == CKR_OK);
    CHECK(d.sessionState(fresh, freshSession) == CKS_RW_PUBLIC_SESSION);
  }
}

TEST_CASE("a context-specific PIN reaches its one operation and is not reused", "[driver][context]") {
  Daemon d;
  const auto key = d.fake->add({{CKA_CLASS, test::fakeUlongBytes(CKO_PRIVATE_KEY)},
                                {CKA_KEY_TYPE, test::fakeUlongBytes(CKK_EC)},
                                {CKA_PRIVATE, test::fakeBoolBytes(true)},
                                {CKA_TOKEN, test::fakeBoolBytes(true)},
                                {CKA_SIGN, test::fakeBoolBytes(true)},
                                {CKA_ALWAYS_AUTHENTICATE, test::fakeBoolBytes(true)}});
  auto client = d.client();
  const auto session = d.open(client);
  REQUIRE(d.login(client, session) == CKR_OK);

  REQUIRE(d.loginContextSpecific(client, session, "1234") == CKR_OK);
  CHECK(d.sign(client, session, key) == CKR_OK);
  CHECK(d.fake->contextPins == std::vector<std::string>{"1234"});

  // Not reused: the next signature has no PIN, and the token asks for it again. That is not a
  // lost login: the client stays logged in.
  CHECK(d.sign(client, session, key) == CKR_USER_NOT_LOGGED_IN);
  CHECK(d.fake->contextPins == std::vector<std::string>{"1234", ""});
  CHECK(d.sessionState(client, session) == CKS_RW_USER_FUNCTIONS);

  // A wrong one is the token's to refuse, at the operation it was given for.
  REQUIRE(d.loginContextSpecific(client, session, "0000") == CKR_OK);
  CHECK(d.sign(client, session, key) == CKR_PIN_INCORRECT);
  CHECK(d.sign(client, session, key) == CKR_USER_NOT_LOGGED_IN);

  // A new operation checked after the PIN was given does not get it.
  REQUIRE(d.loginContextSpecific(client, session, "1234") == CKR_OK);
  wire::Empty none;
  wire::CheckOperationRequest check;
  check.session = session;
  check.operation = wire::Operation::Sign;
  check.mechanism.type = CKM_ECDSA;
  check.key = key;
  d.service->CheckOperation(client, check, none);
  CHECK(d.sign(client, session, key) == CKR_USER_NOT_LOGGED_IN);
  CHECK(d.fake->contextPins.back().empty());
}

TEST_CASE("key generation names its target for the driver", "[driver][keygen]") {
  Daemon d;
  auto client = d.client();
  const auto session = d.open(client);
  REQUIRE(d.login(client, session) == CKR_OK);
  wire::GenerateKeyPairRequest request;
  request.session = session;
  request.mechanism.type = CKM_EC_KEY_PAIR_GEN;
  request.publicTemplate = {{CKA_TOKEN, test::fakeBoolBytes(true)}};
  request.privateTemplate = {{CKA_TOKEN, test::fakeBoolBytes(true)}, {CKA_ID, {0x9a}}};
  wire::GenerateKeyPairReply out;
  d.service->GenerateKeyPair(client, request, out);
  CHECK(d.fake->lastIdHint == token::Bytes{0x9a});
  CHECK_FALSE(d.fake->lastAdminCredential);
}

// Regression: SCARD_W_RESET_CARD was taken for a removed card, so a reset by another program
// (the card still in the reader) dropped the token instead of asking for a new login.
TEST_CASE("a reset card is a lost login, a removed one is removed", "[driver][pcsc]") {
  const auto kindOf = [](long rv) {
    try {
      dojang::checkPcsc(rv, "SCardTransmit");
    } catch (const dojang::Error& error) {
      return std::pair{error.kind(), error.rv()};
    }
    return std::pair{dojang::ErrorKind::Fatal, CK_RV{CKR_OK}};
  };
  CHECK(kindOf(SCARD_W_RESET_CARD) == std::pair{dojang::ErrorKind::LoginLost, CK_RV{CKR_USER_NOT_LOGGED_IN}});
  CHECK(kindOf(SCARD_W_REMOVED_CARD) == std::pair{dojang::ErrorKind::TokenRemoved, CK_RV{CKR_DEVICE_REMOVED}});
}
