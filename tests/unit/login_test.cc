// TokenState over a fake token: each client's own login on top of the token-wide one, and which
// objects and attributes each client gets to see.
#include <catch2/catch.hpp>

#include <chrono>
#include <future>
#include <thread>

#include "src/common/errors/error.h"
#include "src/daemon/token_state.h"
#include "tests/unit/fake_token.h"

namespace core = dojang::daemon;
namespace test = dojang::test;
namespace token = dojang::token;
using dojang::SecureBytes;

namespace {

constexpr core::ClientNumber kAlice = 1;
constexpr core::ClientNumber kBob = 2;
constexpr core::ClientNumber kCarol = 3;
constexpr auto kPatience = std::chrono::seconds(10);  // only catches hangs

struct Fixture {
  std::shared_ptr<test::FakeTokenState> fake = std::make_shared<test::FakeTokenState>();
  core::TokenState state{7, std::make_unique<test::FakeToken>(fake)};
  std::unique_ptr<token::TokenSession> session = state.token().openSession();

  CK_RV login(core::ClientNumber client, const std::string& pin, CK_USER_TYPE user = CKU_USER) {
    const SecureBytes bytes(pin);
    return rvOf([&] { state.login(client, user, &bytes); });
  }
  CK_RV logout(core::ClientNumber client) {
    return rvOf([&] { state.logout(client); });
  }
  int loginCalls() {
    std::lock_guard lock(fake->mutex);
    return fake->loginCalls;
  }
  int logoutCalls() {
    std::lock_guard lock(fake->mutex);
    return fake->logoutCalls;
  }
  bool tokenLoggedIn() {
    std::lock_guard lock(fake->mutex);
    return fake->loggedIn;
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

bool contains(const std::vector<token::ObjectId>& ids, token::ObjectId id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Login bookkeeping

TEST_CASE("the first client's login reaches the token, a second client's does not", "[login]") {
  Fixture f;
  CHECK(f.login(kAlice, "1234") == CKR_OK);
  CHECK(f.loginCalls() == 1);
  CHECK(f.tokenLoggedIn());
  CHECK(f.state.loginOf(kAlice) == std::optional<CK_USER_TYPE>(CKU_USER));
  CHECK_FALSE(f.state.loginOf(kBob).has_value());

  CHECK(f.login(kBob, "1234") == CKR_OK);
  CHECK(f.loginCalls() == 1);  // checked by the daemon against the PIN that worked
  CHECK(f.state.loginOf(kBob) == std::optional<CK_USER_TYPE>(CKU_USER));
  CHECK(f.state.loggedInClientCount() == 2);
}

TEST_CASE("a second client's wrong PIN fails without asking the token", "[login]") {
  Fixture f;
  REQUIRE(f.login(kAlice, "1234") == CKR_OK);
  CHECK(f.login(kBob, "9999") == CKR_PIN_INCORRECT);
  CHECK(f.login(kBob, "") == CKR_PIN_INCORRECT);
  CHECK(f.login(kBob, "12345") == CKR_PIN_INCORRECT);
  CHECK(f.loginCalls() == 1);
  CHECK_FALSE(f.state.loginOf(kBob).has_value());
  CHECK(f.state.loggedInClientCount() == 1);
}

TEST_CASE("after three wrong PINs the daemon answers CKR_PIN_LOCKED until everyone logs out", "[login]") {
  Fixture f;
  REQUIRE(f.login(kAlice, "1234") == CKR_OK);
  CHECK(f.login(kBob, "0000") == CKR_PIN_INCORRECT);
  CHECK(f.login(kBob, "0001") == CKR_PIN_INCORRECT);
  CHECK(f.login(kCarol, "0002") == CKR_PIN_INCORRECT);  // counted per token, not per client
  CHECK(f.login(kBob, "1234") == CKR_PIN_LOCKED);       // even the right PIN
  CHECK(f.login(kCarol, "0003") == CKR_PIN_LOCKED);
  CHECK(f.loginCalls() == 1);
  CHECK(f.state.loginOf(kAlice).has_value());  // whoever is logged in stays logged in

  CHECK(f.logout(kAlice) == CKR_OK);
  CHECK_FALSE(f.tokenLoggedIn());
  CHECK(f.login(kBob, "1234") == CKR_OK);  // the token decides again
  CHECK(f.loginCalls() == 2);
  CHECK(f.login(kCarol, "1234") == CKR_OK);
}

// Regression: a right PIN checked against the daemon's verifier reset the count of wrong ones, so
// wrong guesses alternating with another program's logins were never limited (50 guesses in 25
// rounds, none of them seen by the token).
TEST_CASE("right PINs checked by the daemon do not reset its count of wrong ones", "[login]") {
  Fixture f;
  REQUIRE(f.login(kCarol, "1234") == CKR_OK);  // keeps the token logged in throughout
  for (int round = 0; round < 2; ++round) {
    INFO("round " << round);
    CHECK(f.login(kBob, "000" + std::to_string(round)) == CKR_PIN_INCORRECT);
    CHECK(f.login(kAlice, "1234") == CKR_OK);  // checked by the daemon, not the token
    CHECK(f.logout(kAlice) == CKR_OK);
  }
  CHECK(f.login(kBob, "0002") == CKR_PIN_INCORRECT);
  CHECK(f.login(kBob, "0003") == CKR_PIN_LOCKED);
  CHECK(f.login(kAlice, "1234") == CKR_PIN_LOCKED);
  CHECK(f.loginCalls() == 1);

  // Only the token's own check clears it, once nobody is logged in.
  CHECK(f.logout(kCarol) == CKR_OK);
  CHECK(f.login(kBob, "0004") == CKR_PIN_INCORRECT);  // the token refuses it and counts it itself
  CHECK(f.loginCalls() == 2);
  CHECK(f.login(kBob, "1234") == CKR_OK);
  CHECK(f.loginCalls() == 3);
  CHECK(f.login(kAlice, "1234") == CKR_OK);
  CHECK(f.login(kCarol, "0005") == CKR_PIN_INCORRECT);  // counting from zero again
  CHECK(f.login(kCarol, "1234") == CKR_OK);
}

TEST_CASE("the last client's logout logs the token out", "[login]") {
  Fixture f;
  REQUIRE(f.login(kAlice, "1234") == CKR_OK);
  REQUIRE(f.login(kBob, "1234") == CKR_OK);
  CHECK(f.logout(kAlice) == CKR_OK);
  CHECK(f.logoutCalls() == 0);
  CHECK(f.tokenLoggedIn());
  CHECK(f.state.loggedInClientCount() == 1);
  CHECK(f.logout(kBob) == CKR_OK);
  CHECK(f.logoutCalls() == 1);
  CHECK_FALSE(f.tokenLoggedIn());
  CHECK(f.state.loggedInClientCount() == 0);

  SECTION("the PIN is not remembered past the token's logout") {
    {
      std::lock_guard lock(f.fake->mutex);
      f.fake->pin = "5678";  // changed on the token behind the daemon's back
    }
    CHECK(f.login(kBob, "1234") == CKR_PIN_INCORRECT);
    CHECK(f.loginCalls() == 2);
    CHECK(f.login(kBob, "5678") == CKR_OK);
  }
}

TEST_CASE("a wrong PIN from the token itself is passed up and never retried", "[login]") {
  Fixture f;
  CHECK(f.login(kAlice, "4321") == CKR_PIN_INCORRECT);
  CHECK(f.loginCalls() == 1);
  CHECK_FALSE(f.tokenLoggedIn());
  CHECK_FALSE(f.state.loginOf(kAlice).has_value());
  CHECK(f.login(kAlice, "4321") == CKR_PIN_INCORRECT);
  CHECK(f.loginCalls() == 2);  // one token call per client attempt, no more
  CHECK(f.login(kAlice, "1234") == CKR_OK);
  CHECK(f.loginCalls() == 3);
}

TEST_CASE("login and logout errors", "[login]") {
  Fixture f;
  CHECK(f.logout(kAlice) == CKR_USER_NOT_LOGGED_IN);
  REQUIRE(f.login(kAlice, "1234") == CKR_OK);
  CHECK(f.login(kAlice, "1234") == CKR_USER_ALREADY_LOGGED_IN);
  CHECK(f.login(kBob, "1234", CKU_SO) == CKR_USER_ANOTHER_ALREADY_LOGGED_IN);
  CHECK(f.logout(kBob) == CKR_USER_NOT_LOGGED_IN);
  CHECK(f.loginCalls() == 1);
}

// Regression: a client logged in as USER that logs in as SO got CKR_USER_ALREADY_LOGGED_IN.
TEST_CASE("a client logged in as one user type that logs in as the other", "[login]") {
  Fixture f;
  SECTION("user, then SO") {
    REQUIRE(f.login(kAlice, "1234") == CKR_OK);
    CHECK(f.login(kAlice, "87654321", CKU_SO) == CKR_USER_ANOTHER_ALREADY_LOGGED_IN);
    CHECK(f.login(kAlice, "1234") == CKR_USER_ALREADY_LOGGED_IN);
    CHECK(f.state.loginOf(kAlice) == std::optional<CK_USER_TYPE>(CKU_USER));
  }
  SECTION("SO, then user") {
    REQUIRE(f.login(kAlice, "87654321", CKU_SO) == CKR_OK);
    CHECK(f.login(kAlice, "1234") == CKR_USER_ANOTHER_ALREADY_LOGGED_IN);
    CHECK(f.login(kAlice, "87654321", CKU_SO) == CKR_USER_ALREADY_LOGGED_IN);
    CHECK(f.state.loginOf(kAlice) == std::optional<CK_USER_TYPE>(CKU_SO));
  }
  CHECK(f.loginCalls() == 1);
}

// Regression: the token's description was read once per insertion, so CKF_USER_PIN_COUNT_LOW,
// final-try and locked never showed up.
TEST_CASE("token flags are read again after a login attempt and when they age", "[login][flags]") {
  Fixture f;
  const auto countLow = [&] { return (f.state.description().flags & CKF_USER_PIN_COUNT_LOW) != 0; };
  CHECK_FALSE(countLow());
  CHECK(f.login(kAlice, "4321") == CKR_PIN_INCORRECT);
  CHECK(countLow());
  CHECK(f.login(kAlice, "1234") == CKR_OK);
  CHECK_FALSE(countLow());
  CHECK(f.logout(kAlice) == CKR_OK);

  // A change made outside the daemon shows once the description is older than its lifetime.
  {
    std::lock_guard lock(f.fake->mutex);
    f.fake->extraFlags = CKF_USER_PIN_FINAL_TRY;
  }
  std::this_thread::sleep_for(core::kDescriptionLifetime + std::chrono::milliseconds(200));
  CHECK((f.state.description().flags & CKF_USER_PIN_FINAL_TRY) != 0);
}

// Regression: TokenState::login held the login mutex across the token's login, and every call
// takes it (loginOf), so a PIN-pad login stalled every other client of the token.
TEST_CASE("a slow token login holds up only other logins", "[login][concurrency]") {
  Fixture f;
  Fixture other;  // a second token
  const auto publicKey = f.fake->addPublicKey(CKK_EC, "public");
  const auto otherKey = other.fake->addPrivateKey(CKK_EC, "elsewhere");
  REQUIRE(other.login(kBob, "1234") == CKR_OK);

  std::future<CK_RV> aliceLogin;
  std::future<CK_RV> carolLogin;
  std::future<CK_RV> daveLogin;
  std::future<bool> bobsWork;
  struct OpenGate {
    test::FakeTokenState& fake;
    ~OpenGate() { fake.loginGate.open(); }  // before the futures above wait for their threads
  } openGate{*f.fake};

  f.fake->loginGate.close();
  aliceLogin = std::async(std::launch::async, [&] { return f.login(kAlice, "1234"); });
  REQUIRE(f.fake->loginGate.waitForWaiters(1));  // Alice is inside the token's login now

  bobsWork = std::async(std::launch::async, [&] {
    const core::Viewer bob{kBob, f.state.loginOf(kBob).has_value()};  // what every call asks
    const auto found = f.state.find(*f.session, {}, bob);
    const auto facts = other.state.factsFor(*other.session, otherKey, {kBob, true});
    const std::uint8_t data[] = {1, 2, 3};
    const auto signature = other.session->sign({CKM_ECDSA, {}}, otherKey, data, {});
    return contains(found, publicKey) && facts.objectClass == CKO_PRIVATE_KEY && !signature.empty();
  });
  REQUIRE(bobsWork.wait_for(kPatience) == std::future_status::ready);
  CHECK(bobsWork.get());
  CHECK_FALSE(f.state.loginOf(kAlice).has_value());  // not logged in until the token says so

  // Logins wait for the token's answer: it decides whether the daemon can check them itself.
  carolLogin = std::async(std::launch::async, [&] { return f.login(kCarol, "1234"); });
  daveLogin = std::async(std::launch::async, [&] { return f.login(4, "9999"); });
  CHECK(carolLogin.wait_for(std::chrono::milliseconds(100)) == std::future_status::timeout);
  f.fake->loginGate.open();
  REQUIRE(aliceLogin.wait_for(kPatience) == std::future_status::ready);
  REQUIRE(carolLogin.wait_for(kPatience) == std::future_status::ready);
  REQUIRE(daveLogin.wait_for(kPatience) == std::future_status::ready);
  CHECK(aliceLogin.get() == CKR_OK);
  CHECK(carolLogin.get() == CKR_OK);
  CHECK(daveLogin.get() == CKR_PIN_INCORRECT);
  CHECK(f.loginCalls() == 1);  // Carol's and Dave's PINs were checked against Alice's
  CHECK(f.state.loggedInClientCount() == 2);
  CHECK(f.state.loginOf(kAlice) == std::optional<CK_USER_TYPE>(CKU_USER));
  CHECK(f.tokenLoggedIn());
}

TEST_CASE("a failed slow login lets the next login ask the token itself", "[login][concurrency]") {
  Fixture f;
  std::future<CK_RV> first;
  std::future<CK_RV> second;
  struct OpenGate {
    test::FakeTokenState& fake;
    ~OpenGate() { fake.loginGate.open(); }
  } openGate{*f.fake};
  f.fake->loginGate.close();
  first = std::async(std::launch::async, [&] { return f.login(kAlice, "0000"); });
  REQUIRE(f.fake->loginGate.waitForWaiters(1));
  second = std::async(std::launch::async, [&] { return f.login(kBob, "1234"); });
  f.fake->loginGate.open();
  REQUIRE(first.wait_for(kPatience) == std::future_status::ready);
  REQUIRE(second.wait_for(kPatience) == std::future_status::ready);
  CHECK(first.get() == CKR_PIN_INCORRECT);
  CHECK(second.get() == CKR_OK);
  CHECK(f.loginCalls() == 2);
  CHECK(f.state.loginOf(kBob) == std::optional<CK_USER_TYPE>(CKU_USER));
}

TEST_CASE("after a PIN change the daemon checks the new PIN", "[login]") {
  Fixture f;
  REQUIRE(f.login(kAlice, "1234") == CKR_OK);
  f.session->setPin(SecureBytes(std::string_view("1234")), SecureBytes(std::string_view("8765")));
  f.state.pinChanged(SecureBytes(std::string_view("8765")));
  CHECK(f.login(kBob, "1234") == CKR_PIN_INCORRECT);
  CHECK(f.login(kBob, "8765") == CKR_OK);
  CHECK(f.loginCalls() == 1);
}

// Regression: TokenState::login skips the verifier when pin == nullptr (a "protected authentication
// path" login), so while one client is logged in with a PIN any other client logs in by sending
// Login with pinGiven = false.
TEST_CASE("a second client cannot skip the PIN with a NULL-PIN login", "[login]") {
  Fixture f;
  REQUIRE(f.login(kAlice, "1234") == CKR_OK);
  const CK_RV rv = Fixture::rvOf([&] { f.state.login(kBob, CKU_USER, nullptr); });
  CHECK(rv == CKR_PIN_INCORRECT);
  CHECK_FALSE(f.state.loginOf(kBob).has_value());
}

// ---------------------------------------------------------------------------------------------
// Object visibility

TEST_CASE("private objects are invisible to a client that is not logged in", "[login][objects]") {
  Fixture f;
  const auto privateKey = f.fake->addPrivateKey(CKK_EC, "key");
  const auto publicKey = f.fake->addPublicKey(CKK_EC, "key");
  REQUIRE(f.login(kAlice, "1234") == CKR_OK);  // the token now shows its private objects

  const core::Viewer alice{kAlice, true};
  const core::Viewer bob{kBob, false};
  const auto aliceSees = f.state.find(*f.session, {}, alice);
  CHECK(contains(aliceSees, privateKey));
  CHECK(contains(aliceSees, publicKey));

  const auto bobSees = f.state.find(*f.session, {}, bob);
  CHECK_FALSE(contains(bobSees, privateKey));
  CHECK(contains(bobSees, publicKey));
  const auto privateClass = test::fakeUlongBytes(CKO_PRIVATE_KEY);
  CHECK(f.state.find(*f.session, {{CKA_CLASS, privateClass}}, bob).empty());
  CHECK(f.state.find(*f.session, {{CKA_CLASS, privateClass}}, alice) == std::vector<token::ObjectId>{privateKey});

  CHECK(Fixture::rvOf([&] { (void)f.state.factsFor(*f.session, privateKey, bob); }) == CKR_OBJECT_HANDLE_INVALID);
  const CK_ATTRIBUTE_TYPE types[] = {CKA_LABEL};
  CHECK(Fixture::rvOf([&] { (void)f.state.read(*f.session, privateKey, types, bob); }) == CKR_OBJECT_HANDLE_INVALID);
  CHECK(f.state.factsFor(*f.session, privateKey, alice).isPrivate);
}

TEST_CASE("session objects are visible only to the client that made them", "[login][objects]") {
  Fixture f;
  REQUIRE(f.login(kAlice, "1234") == CKR_OK);
  REQUIRE(f.login(kBob, "1234") == CKR_OK);
  const core::Viewer alice{kAlice, true};
  const core::Viewer bob{kBob, true};
  const core::Viewer carol{kCarol, false};

  const bool listFirst = GENERATE(true, false);
  if (listFirst) {
    (void)f.state.find(*f.session, {}, alice);  // the daemon has listed the token already
  }
  const auto mine = f.session->createObject({{CKA_CLASS, test::fakeUlongBytes(CKO_DATA)},
                                             {CKA_TOKEN, test::fakeBoolBytes(false)},
                                             {CKA_PRIVATE, test::fakeBoolBytes(false)},
                                             {CKA_LABEL, {'m', 'i', 'n', 'e'}}});
  f.state.remember(mine, kAlice);

  CHECK(contains(f.state.find(*f.session, {}, alice), mine));
  CHECK_FALSE(contains(f.state.find(*f.session, {}, bob), mine));
  CHECK_FALSE(contains(f.state.find(*f.session, {}, carol), mine));
  CHECK(f.state.factsFor(*f.session, mine, alice).owner == kAlice);
  CHECK(Fixture::rvOf([&] { (void)f.state.factsFor(*f.session, mine, bob); }) == CKR_OBJECT_HANDLE_INVALID);
}

TEST_CASE("CKA_VALUE of a private key is sensitive without asking the token", "[login][objects]") {
  Fixture f;
  const auto key = f.fake->addPrivateKey(CKK_RSA, "rsa");
  REQUIRE(f.login(kAlice, "1234") == CKR_OK);
  const core::Viewer alice{kAlice, true};

  const CK_ATTRIBUTE_TYPE types[] = {CKA_LABEL, CKA_VALUE, CKA_PRIVATE_EXPONENT, CKA_KEY_TYPE, CKA_MODULUS};
  const auto reads = f.state.read(*f.session, key, types, alice);
  REQUIRE(reads.size() == 5);
  CHECK(reads[0].status == CKR_OK);
  CHECK(reads[0].value == token::Bytes{'r', 's', 'a'});
  CHECK(reads[1].type == CKA_VALUE);
  CHECK(reads[1].status == CKR_ATTRIBUTE_SENSITIVE);
  CHECK(reads[1].value.empty());
  CHECK(reads[2].status == CKR_ATTRIBUTE_SENSITIVE);
  CHECK(reads[3].status == CKR_OK);
  CHECK(reads[4].status == CKR_ATTRIBUTE_TYPE_INVALID);  // the fake key has none
  CHECK_FALSE(f.fake->asked(CKA_VALUE));
  CHECK_FALSE(f.fake->asked(CKA_PRIVATE_EXPONENT));

  SECTION("nor can a search template probe it") {
    const auto found = f.state.find(*f.session, {{CKA_VALUE, {0xde, 0xad, 0xbe, 0xef}}}, alice);
    CHECK_FALSE(contains(found, key));
  }
  SECTION("attributes are read from the token once") {
    int before = 0;
    {
      std::lock_guard lock(f.fake->mutex);
      before = f.fake->readCalls;
    }
    (void)f.state.read(*f.session, key, types, alice);
    std::lock_guard lock(f.fake->mutex);
    CHECK(f.fake->readCalls == before);
  }
}

// Regression: TokenState::find fetches every template attribute from the token before it applies
// isSecretAttribute, so searching on CKA_VALUE makes the daemon read a private key's CKA_VALUE from
// a token that hands it out, and keep it in its attribute cache (clients still get
// CKR_ATTRIBUTE_SENSITIVE from read()).
TEST_CASE("a search on CKA_VALUE does not read a private key's value from the token",
          "[login][objects]") {
  Fixture f;
  const auto key = f.fake->addPrivateKey(CKK_EC, "ec");
  REQUIRE(f.login(kAlice, "1234") == CKR_OK);
  const auto found = f.state.find(*f.session, {{CKA_VALUE, {0xde, 0xad, 0xbe, 0xef}}}, {kAlice, true});
  CHECK_FALSE(contains(found, key));
  CHECK_FALSE(f.fake->asked(CKA_VALUE));
}
