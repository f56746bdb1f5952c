// TokenAccess, the daemon's one policy layer, used directly the way the daemon's own work (the
// PIN prompter, the renewal scheduler) will use it: token types in, no wire. And the key-use rules
// (src/common/cryptoki/key_use.h) that it shares with the vendor driver.
#include "src/daemon/token_access.h"

#include <algorithm>
#include <catch2/catch.hpp>

#include "src/common/cryptoki/key_use.h"
#include "tests/unit/fake_daemon.h"
#include "tests/unit/fake_token.h"

namespace core = dojang::daemon;
namespace test = dojang::test;
namespace token = dojang::token;
namespace wire = dojang::wire;
using dojang::OperationKind;
using dojang::test::fakeBoolBytes;
using dojang::test::fakeUlongBytes;

namespace {

using test::rvOf;

constexpr std::uint64_t kReadOnly = CKF_SERIAL_SESSION;

token::Mechanism plain(CK_MECHANISM_TYPE type) {
  token::Mechanism mechanism;
  mechanism.type = type;
  return mechanism;
}

const token::Bytes* valueOf(const token::AttributeList& list, CK_ATTRIBUTE_TYPE type) {
  for (const auto& attribute : list) {
    if (attribute.type == type) {
      return &attribute.value;
    }
  }
  return nullptr;
}

// One client of a fake daemon with a session open, and TokenAccess over that session.
struct Fixture : test::FakeDaemon {
  explicit Fixture(std::uint64_t flags = CKF_SERIAL_SESSION | CKF_RW_SESSION)
      : FakeDaemon("token_access_test") {
    handle = open(context, flags);
    session = context.client->session(handle);
    access = std::make_unique<core::TokenAccess>(*context.client, *session);
  }
  void login() {
    wire::Empty out;
    service->Login(context, {handle, CKU_USER, true, wire::Bytes{'1', '2', '3', '4'}}, out);
  }
  token::AttributeList onFakeToken(token::ObjectId object) {
    std::lock_guard lock(fake->mutex);
    return fake->objects.at(object);
  }

  core::CallContext context = client();
  std::uint64_t handle = 0;
  std::shared_ptr<core::ClientSession> session;
  std::unique_ptr<core::TokenAccess> access;
};

}  // namespace

TEST_CASE("TokenAccess generates key pairs with the protection forced on", "[token_access]") {
  Fixture f;
  token::AttributeList publicTemplate = {{CKA_TOKEN, fakeBoolBytes(true)}};
  token::AttributeList privateTemplate = {{CKA_TOKEN, fakeBoolBytes(true)},
                                          {CKA_SIGN, fakeBoolBytes(true)},
                                          {CKA_SENSITIVE, fakeBoolBytes(false)},
                                          {CKA_EXTRACTABLE, fakeBoolBytes(true)},
                                          {CKA_ID, {0x9a}}};
  CHECK(rvOf([&] {
          (void)f.access->generateKeyPair(plain(CKM_EC_KEY_PAIR_GEN), publicTemplate, privateTemplate);
        }) == CKR_USER_NOT_LOGGED_IN);

  f.login();
  const auto pair = f.access->generateKeyPair(plain(CKM_EC_KEY_PAIR_GEN), publicTemplate, privateTemplate);
  const auto stored = f.onFakeToken(pair.privateKey);
  REQUIRE(valueOf(stored, CKA_SENSITIVE) != nullptr);
  CHECK(*valueOf(stored, CKA_SENSITIVE) == fakeBoolBytes(true));
  CHECK(*valueOf(stored, CKA_EXTRACTABLE) == fakeBoolBytes(false));
  CHECK(*valueOf(stored, CKA_PRIVATE) == fakeBoolBytes(true));
  CHECK(f.fake->lastIdHint == token::Bytes{0x9a});  // the CKA_ID names the target

  // The key is usable, and what the token would hand out of it stays in.
  CHECK(f.access->sign(plain(CKM_ECDSA), pair.privateKey, token::Bytes(32, 1)).size() > 0);
  const CK_ATTRIBUTE_TYPE value[] = {CKA_VALUE};
  CHECK(f.access->read(pair.privateKey, value).at(0).status == CKR_ATTRIBUTE_SENSITIVE);

  // Not a key-generation mechanism, or not one of this token's.
  CHECK(rvOf([&] { (void)f.access->generateKeyPair(plain(CKM_ECDSA), publicTemplate, privateTemplate); }) ==
        CKR_MECHANISM_INVALID);
}

TEST_CASE("TokenAccess keeps token objects unchanged in read-only sessions", "[token_access]") {
  Fixture f(kReadOnly);
  f.login();
  token::AttributeList certificate = {{CKA_CLASS, fakeUlongBytes(CKO_CERTIFICATE)},
                                      {CKA_TOKEN, fakeBoolBytes(true)}};
  CHECK(rvOf([&] { (void)f.access->create(certificate); }) == CKR_SESSION_READ_ONLY);
  const auto key = f.fake->addPrivateKey(CKK_EC, "on the token");
  CHECK(rvOf([&] { f.access->destroy(key); }) == CKR_SESSION_READ_ONLY);
  CHECK(rvOf([&] { f.access->write(key, {{CKA_LABEL, {'x'}}}); }) == CKR_SESSION_READ_ONLY);
  // A session object is the client's own and may be made.
  token::AttributeList sessionObject = {{CKA_CLASS, fakeUlongBytes(CKO_DATA)},
                                        {CKA_TOKEN, fakeBoolBytes(false)}};
  const auto made = f.access->create(sessionObject);
  CHECK(f.session->sessionObjects == std::vector<token::ObjectId>{made});
}

TEST_CASE("TokenAccess refuses what would loosen a key's protection", "[token_access]") {
  Fixture f;
  f.login();
  const auto key = f.fake->addPrivateKey(CKK_EC, "key");
  CHECK(rvOf([&] {
          f.access->write(key, {{CKA_EXTRACTABLE, fakeBoolBytes(true)}});
        }) == CKR_ATTRIBUTE_READ_ONLY);
  CHECK(rvOf([&] {
          (void)f.access->copy(key, {{CKA_SENSITIVE, fakeBoolBytes(false)}});
        }) == CKR_ATTRIBUTE_READ_ONLY);
  CHECK(rvOf([&] {
          f.access->write(key, {{CKA_LABEL, {'a'}}, {CKA_LABEL, {'b'}}});
        }) == CKR_TEMPLATE_INCONSISTENT);
  f.access->write(key, {{CKA_LABEL, {'y'}}});
  CHECK(*valueOf(f.onFakeToken(key), CKA_LABEL) == token::Bytes{'y'});
}

TEST_CASE("TokenAccess checks key use itself, whatever the token would allow", "[token_access]") {
  Fixture f;
  f.login();
  // The fake's sign() looks at no usage attribute: only the policy layer can refuse this key.
  const auto noSign = f.fake->add({{CKA_CLASS, fakeUlongBytes(CKO_PRIVATE_KEY)},
                                   {CKA_KEY_TYPE, fakeUlongBytes(CKK_EC)},
                                   {CKA_PRIVATE, fakeBoolBytes(true)},
                                   {CKA_TOKEN, fakeBoolBytes(true)},
                                   {CKA_SIGN, fakeBoolBytes(false)}});
  const int signsBefore = f.fake->signCalls;
  CHECK(rvOf([&] { (void)f.access->sign(plain(CKM_ECDSA), noSign, token::Bytes(32, 1)); }) ==
        CKR_KEY_FUNCTION_NOT_PERMITTED);
  CHECK(f.fake->signCalls == signsBefore);

  const auto rsaKey = f.fake->addPrivateKey(CKK_RSA, "rsa");
  CHECK(rvOf([&] { f.access->checkKeyOperation(OperationKind::Sign, plain(CKM_ECDSA), rsaKey); }) ==
        CKR_KEY_TYPE_INCONSISTENT);
  const auto certificate =
      f.fake->add({{CKA_CLASS, fakeUlongBytes(CKO_CERTIFICATE)}, {CKA_TOKEN, fakeBoolBytes(true)}});
  CHECK(rvOf([&] { f.access->checkKeyOperation(OperationKind::Sign, plain(CKM_ECDSA), certificate); }) ==
        CKR_KEY_HANDLE_INVALID);
  // AES-CBC is the token's but not served by dojang.
  CHECK(rvOf([&] { f.access->checkKeyOperation(OperationKind::Decrypt, plain(CKM_AES_CBC), rsaKey); }) ==
        CKR_MECHANISM_INVALID);
}

TEST_CASE("TokenAccess hides what the client may not see", "[token_access]") {
  Fixture f;
  const auto key = f.fake->addPrivateKey(CKK_EC, "private");
  const auto publicKey = f.fake->addPublicKey(CKK_EC, "public");
  CHECK(f.access->find({}) ==
        std::vector<token::ObjectId>{publicKey});  // before a login: public objects only
  CHECK(rvOf([&] { f.access->checkKeyOperation(OperationKind::Sign, plain(CKM_ECDSA), key); }) ==
        CKR_KEY_HANDLE_INVALID);
  f.login();
  const auto found = f.access->find({{CKA_CLASS, fakeUlongBytes(CKO_PRIVATE_KEY)}});
  CHECK(std::find(found.begin(), found.end(), key) != found.end());
}

TEST_CASE("refuseKeyUse: the PKCS#11 rules shared by the daemon and the vendor driver", "[token_access]") {
  using dojang::refuseKeyUse;
  const auto rvFor = [](OperationKind kind, std::optional<CK_KEY_TYPE> required, dojang::KeyUseFacts facts) {
    const auto refusal = refuseKeyUse(kind, required, facts);
    return refusal ? refusal->rv : CKR_OK;
  };
  CHECK(rvFor(OperationKind::Sign, CKK_EC, {CKO_PRIVATE_KEY, CKK_EC, true}) == CKR_OK);
  CHECK(rvFor(OperationKind::Verify, CKK_EC, {CKO_PUBLIC_KEY, CKK_EC, true}) == CKR_OK);
  CHECK(rvFor(OperationKind::Sign, CKK_EC, {CKO_CERTIFICATE, CKK_EC, true}) == CKR_KEY_HANDLE_INVALID);
  CHECK(rvFor(OperationKind::Sign, CKK_EC, {CKO_PUBLIC_KEY, CKK_EC, true}) == CKR_KEY_TYPE_INCONSISTENT);
  CHECK(rvFor(OperationKind::Sign, CKK_RSA, {CKO_PRIVATE_KEY, CKK_EC, true}) == CKR_KEY_TYPE_INCONSISTENT);
  CHECK(rvFor(OperationKind::Sign, CKK_EC, {CKO_SECRET_KEY, CKK_EC, true}) == CKR_KEY_TYPE_INCONSISTENT);
  CHECK(rvFor(OperationKind::Sign, std::nullopt, {CKO_SECRET_KEY, CKK_GENERIC_SECRET, true}) == CKR_OK);
  CHECK(rvFor(OperationKind::Decrypt, CKK_RSA, {CKO_PRIVATE_KEY, CKK_RSA, false}) ==
        CKR_KEY_FUNCTION_NOT_PERMITTED);
}
