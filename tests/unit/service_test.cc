// Service, the daemon's handler of every wire call, over a fake token: the policy it applies to
// templates (limits, duplicate types, key protection on copies), SO logins, token flags after PIN
// checks, and C_CopyObject / C_GetObjectSize. Clients are made directly, without a connection.
#include <catch2/catch.hpp>

#include "src/common/errors/error.h"
#include "src/common/wire/wire_limits.h"
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
constexpr std::uint64_t kReadOnly = CKF_SERIAL_SESSION;

wire::Attribute ulongAttribute(CK_ATTRIBUTE_TYPE type, CK_ULONG value) { return {type, test::fakeUlongBytes(value)}; }
wire::Attribute boolAttribute(CK_ATTRIBUTE_TYPE type, bool value) { return {type, test::fakeBoolBytes(value)}; }
wire::Attribute textAttribute(CK_ATTRIBUTE_TYPE type, const std::string& value) {
  return {type, wire::Bytes(value.begin(), value.end())};
}

// One daemon over one fake token in slot 1.
struct Daemon : test::FakeDaemon {
  Daemon() : FakeDaemon("service_test") {}
  CK_RV login(core::CallContext& context, std::uint64_t session, CK_USER_TYPE user = CKU_USER) {
    const std::string pin = user == CKU_SO ? "87654321" : "1234";
    wire::Empty out;
    return rvOf([&] { service->Login(context, {session, user, true, wire::Bytes(pin.begin(), pin.end())}, out); });
  }
  CK_RV create(core::CallContext& context, std::uint64_t session, std::vector<wire::Attribute> templ,
               std::uint64_t* object = nullptr) {
    wire::ObjectReply out;
    const CK_RV rv = rvOf([&] { service->CreateObject(context, {session, std::move(templ)}, out); });
    if (object != nullptr) {
      *object = out.object;
    }
    return rv;
  }
  CK_RV copy(core::CallContext& context, std::uint64_t session, std::uint64_t object,
             std::vector<wire::Attribute> templ, std::uint64_t* copied = nullptr) {
    wire::ObjectReply out;
    const CK_RV rv = rvOf([&] { service->CopyObject(context, {session, object, std::move(templ)}, out); });
    if (copied != nullptr) {
      *copied = out.object;
    }
    return rv;
  }
  std::vector<std::uint64_t> find(core::CallContext& context, std::uint64_t session,
                                  std::vector<wire::Attribute> templ = {}) {
    wire::FindObjectsReply out;
    service->FindObjects(context, {session, std::move(templ)}, out);
    return out.objects;
  }
  wire::AttributeResult attribute(core::CallContext& context, std::uint64_t session, std::uint64_t object,
                                  CK_ATTRIBUTE_TYPE type) {
    wire::GetAttributeValueReply out;
    service->GetAttributeValue(context, {session, object, {type}}, out);
    return out.attributes.at(0);
  }
  // What the fake token holds for an object, read behind the daemon's back.
  std::optional<token::Bytes> onToken(std::uint64_t object, CK_ATTRIBUTE_TYPE type) {
    std::lock_guard lock(fake->mutex);
    for (const auto& attribute : fake->objects.at(object)) {
      if (attribute.type == type) {
        return attribute.value;
      }
    }
    return std::nullopt;
  }
};

bool contains(const std::vector<std::uint64_t>& ids, std::uint64_t id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

std::vector<wire::Attribute> dataTemplate(const std::string& label, bool onToken = false) {
  return {ulongAttribute(CKA_CLASS, CKO_DATA), boolAttribute(CKA_TOKEN, onToken), boolAttribute(CKA_PRIVATE, false),
          textAttribute(CKA_LABEL, label)};
}

std::vector<wire::Attribute> keyTemplate(const std::string& label, bool onToken = false) {
  return {ulongAttribute(CKA_CLASS, CKO_PRIVATE_KEY), ulongAttribute(CKA_KEY_TYPE, CKK_EC),
          boolAttribute(CKA_TOKEN, onToken), boolAttribute(CKA_SIGN, true), textAttribute(CKA_LABEL, label),
          {CKA_VALUE, wire::Bytes{0x11, 0x22, 0x33}}};
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// SO login (C)

// Regression: only the session passed to C_Login was looked at.
TEST_CASE("an SO login is refused while the client has any read-only session", "[service][login]") {
  Daemon d;
  auto client = d.client();
  const auto readWrite = d.open(client, kReadWrite);
  const auto readOnly = d.open(client, kReadOnly);
  CHECK(d.login(client, readWrite, CKU_SO) == CKR_SESSION_READ_ONLY_EXISTS);
  CHECK(d.login(client, readOnly, CKU_SO) == CKR_SESSION_READ_ONLY_EXISTS);

  // Another client's read-only sessions are its own business.
  auto other = d.client();
  (void)d.open(other, kReadOnly);
  wire::Empty none;
  d.service->CloseSession(client, {readOnly}, none);
  CHECK(d.login(client, readWrite, CKU_SO) == CKR_OK);
}

// ---------------------------------------------------------------------------------------------
// Templates: limits and duplicate types (R4, R5)

TEST_CASE("a request naming too many attributes is refused", "[service][limits]") {
  Daemon d;
  auto client = d.client();
  const auto session = d.open(client);
  std::uint64_t object = 0;
  REQUIRE(d.create(client, session, dataTemplate("data"), &object) == CKR_OK);

  std::vector<std::uint64_t> types(wire::kMaxTemplateAttributes + 1);
  for (std::size_t i = 0; i < types.size(); ++i) {
    types[i] = CKA_VENDOR_DEFINED + i;
  }
  wire::GetAttributeValueReply reads;
  CHECK(rvOf([&] { d.service->GetAttributeValue(client, {session, object, types}, reads); }) == CKR_ARGUMENTS_BAD);
  types.pop_back();
  CHECK(rvOf([&] { d.service->GetAttributeValue(client, {session, object, types}, reads); }) == CKR_OK);
  CHECK(reads.attributes.size() == wire::kMaxTemplateAttributes);

  std::vector<wire::Attribute> templ;
  for (std::size_t i = 0; i <= wire::kMaxTemplateAttributes; ++i) {
    templ.push_back({CKA_VENDOR_DEFINED + i, {1}});
  }
  wire::FindObjectsReply found;
  CHECK(rvOf([&] { d.service->FindObjects(client, {session, templ}, found); }) == CKR_TEMPLATE_INCONSISTENT);
  CHECK(d.create(client, session, templ) == CKR_TEMPLATE_INCONSISTENT);
  wire::Empty none;
  CHECK(rvOf([&] { d.service->SetAttributeValue(client, {session, object, templ}, none); }) ==
        CKR_TEMPLATE_INCONSISTENT);
  templ.pop_back();
  CHECK(rvOf([&] { d.service->FindObjects(client, {session, templ}, found); }) == CKR_OK);
}

// Regression: Service read the first CKA_PRIVATE of a template and SoftHSM keeps the last, so a
// client that never logged in created a private token object.
TEST_CASE("a template that names a type twice is refused everywhere", "[service][templates]") {
  Daemon d;
  auto client = d.client();
  const auto session = d.open(client);
  const auto objectCount = [&] {
    std::lock_guard lock(d.fake->mutex);
    return d.fake->objects.size();
  };

  SECTION("CKA_PRIVATE false, then true, from a client that is not logged in") {
    CHECK(d.create(client, session,
                   {ulongAttribute(CKA_CLASS, CKO_DATA), boolAttribute(CKA_TOKEN, true),
                    boolAttribute(CKA_PRIVATE, false), boolAttribute(CKA_PRIVATE, true)}) ==
          CKR_TEMPLATE_INCONSISTENT);
    CHECK(objectCount() == 0);
  }
  SECTION("CKA_CLASS data, then private key, from a logged-in client") {
    REQUIRE(d.login(client, session) == CKR_OK);
    // A backend keeping the last CKA_CLASS would make a private key without forced protection.
    CHECK(d.create(client, session,
                   {ulongAttribute(CKA_CLASS, CKO_DATA), ulongAttribute(CKA_CLASS, CKO_PRIVATE_KEY),
                    ulongAttribute(CKA_KEY_TYPE, CKK_EC), boolAttribute(CKA_SENSITIVE, false)}) ==
          CKR_TEMPLATE_INCONSISTENT);
    CHECK(objectCount() == 0);
  }
  SECTION("in a search, a write, a copy and a key generation") {
    REQUIRE(d.login(client, session) == CKR_OK);
    std::uint64_t object = 0;
    REQUIRE(d.create(client, session, dataTemplate("data"), &object) == CKR_OK);
    const std::vector<wire::Attribute> twice = {textAttribute(CKA_LABEL, "a"), textAttribute(CKA_LABEL, "b")};
    wire::FindObjectsReply found;
    CHECK(rvOf([&] { d.service->FindObjects(client, {session, twice}, found); }) == CKR_TEMPLATE_INCONSISTENT);
    wire::Empty none;
    CHECK(rvOf([&] { d.service->SetAttributeValue(client, {session, object, twice}, none); }) ==
          CKR_TEMPLATE_INCONSISTENT);
    CHECK(d.onToken(object, CKA_LABEL) == token::Bytes{'d', 'a', 't', 'a'});
    CHECK(d.copy(client, session, object, twice) == CKR_TEMPLATE_INCONSISTENT);
    wire::GenerateKeyPairRequest generate;
    generate.session = session;
    generate.mechanism.type = CKM_EC_KEY_PAIR_GEN;
    generate.publicTemplate = twice;
    wire::GenerateKeyPairReply pair;
    CHECK(rvOf([&] { d.service->GenerateKeyPair(client, generate, pair); }) == CKR_TEMPLATE_INCONSISTENT);
    generate.publicTemplate.clear();
    generate.privateTemplate = twice;
    CHECK(rvOf([&] { d.service->GenerateKeyPair(client, generate, pair); }) == CKR_TEMPLATE_INCONSISTENT);
    CHECK(objectCount() == 1);
  }
}

TEST_CASE("CKA_CLASS is required and boolean attributes must be CK_BBOOLs", "[service][templates]") {
  Daemon d;
  auto client = d.client();
  const auto session = d.open(client);
  REQUIRE(d.login(client, session) == CKR_OK);
  CHECK(d.create(client, session, {textAttribute(CKA_LABEL, "classless")}) == CKR_TEMPLATE_INCOMPLETE);
  CHECK(d.create(client, session, {{CKA_CLASS, wire::Bytes{3, 0, 0, 0}}, ulongAttribute(CKA_KEY_TYPE, CKK_EC)}) ==
        CKR_ATTRIBUTE_VALUE_INVALID);
  CHECK(d.create(client, session, {ulongAttribute(CKA_CLASS, CKO_DATA), {CKA_PRIVATE, wire::Bytes{0, 0}}}) ==
        CKR_ATTRIBUTE_VALUE_INVALID);
}

TEST_CASE("imported secret keys are forced sensitive too", "[service][templates]") {
  Daemon d;
  auto client = d.client();
  const auto session = d.open(client);
  REQUIRE(d.login(client, session) == CKR_OK);
  std::uint64_t key = 0;
  REQUIRE(d.create(client, session,
                   {ulongAttribute(CKA_CLASS, CKO_SECRET_KEY), ulongAttribute(CKA_KEY_TYPE, CKK_AES),
                    boolAttribute(CKA_SENSITIVE, false), boolAttribute(CKA_EXTRACTABLE, true),
                    boolAttribute(CKA_PRIVATE, false), {CKA_VALUE, wire::Bytes(16, 0x42)}},
                   &key) == CKR_OK);
  CHECK(d.onToken(key, CKA_SENSITIVE) == test::fakeBoolBytes(true));
  CHECK(d.onToken(key, CKA_EXTRACTABLE) == test::fakeBoolBytes(false));
  CHECK(d.onToken(key, CKA_PRIVATE) == test::fakeBoolBytes(true));
}

// ---------------------------------------------------------------------------------------------
// C_CopyObject and C_GetObjectSize (F)

TEST_CASE("C_CopyObject copies what the caller may see, never looser", "[service][copy]") {
  Daemon d;
  auto alice = d.client();
  auto bob = d.client();
  const auto aliceSession = d.open(alice);
  const auto bobSession = d.open(bob);
  REQUIRE(d.login(alice, aliceSession) == CKR_OK);
  std::uint64_t data = 0;
  std::uint64_t key = 0;
  REQUIRE(d.create(alice, aliceSession, dataTemplate("data", true), &data) == CKR_OK);
  REQUIRE(d.create(alice, aliceSession, keyTemplate("key", true), &key) == CKR_OK);

  SECTION("a data object, relabelled, as a session object of the caller") {
    std::uint64_t copy = 0;
    REQUIRE(d.copy(bob, bobSession, data, {boolAttribute(CKA_TOKEN, false), textAttribute(CKA_LABEL, "copy")},
                   &copy) == CKR_OK);
    CHECK(copy != data);
    CHECK(d.attribute(bob, bobSession, copy, CKA_LABEL).value == wire::Bytes{'c', 'o', 'p', 'y'});
    CHECK(contains(d.find(bob, bobSession), copy));
    CHECK_FALSE(contains(d.find(alice, aliceSession), copy));  // a session object is its maker's
  }
  SECTION("a key: only logged in, and its protection stays") {
    CHECK(d.copy(bob, bobSession, key, {}) == CKR_OBJECT_HANDLE_INVALID);  // Bob cannot see it
    for (const auto& loosen : {boolAttribute(CKA_SENSITIVE, false), boolAttribute(CKA_EXTRACTABLE, true),
                               boolAttribute(CKA_PRIVATE, false)}) {
      INFO("attribute " << loosen.type);
      CHECK(d.copy(alice, aliceSession, key, {loosen}) == CKR_ATTRIBUTE_READ_ONLY);
    }
    CHECK(d.copy(alice, aliceSession, key, {ulongAttribute(CKA_CLASS, CKO_DATA)}) == CKR_ATTRIBUTE_READ_ONLY);
    std::uint64_t copy = 0;
    REQUIRE(d.copy(alice, aliceSession, key, {textAttribute(CKA_LABEL, "key copy")}, &copy) == CKR_OK);
    CHECK(d.onToken(copy, CKA_SENSITIVE) == test::fakeBoolBytes(true));
    CHECK(d.onToken(copy, CKA_EXTRACTABLE) == test::fakeBoolBytes(false));
    CHECK(d.attribute(alice, aliceSession, copy, CKA_VALUE).status == CKR_ATTRIBUTE_SENSITIVE);
  }
  SECTION("a private object cannot be copied public") {
    std::uint64_t secret = 0;
    auto templ = dataTemplate("secret", true);
    templ[2] = boolAttribute(CKA_PRIVATE, true);
    REQUIRE(d.create(alice, aliceSession, templ, &secret) == CKR_OK);
    CHECK(d.copy(alice, aliceSession, secret, {boolAttribute(CKA_PRIVATE, false)}) == CKR_ATTRIBUTE_READ_ONLY);
    CHECK(d.copy(bob, bobSession, data, {boolAttribute(CKA_PRIVATE, true)}) == CKR_USER_NOT_LOGGED_IN);
  }
  SECTION("token copies need a read-write session") {
    const auto readOnly = d.open(bob, kReadOnly);
    CHECK(d.copy(bob, readOnly, data, {}) == CKR_SESSION_READ_ONLY);  // the copy of a token object is one
    CHECK(d.copy(bob, readOnly, data, {boolAttribute(CKA_TOKEN, false)}) == CKR_OK);
  }
}

TEST_CASE("C_GetObjectSize answers as the token does, for objects the caller may see", "[service][copy]") {
  Daemon d;
  auto alice = d.client();
  auto bob = d.client();
  const auto aliceSession = d.open(alice);
  const auto bobSession = d.open(bob);
  REQUIRE(d.login(alice, aliceSession) == CKR_OK);
  std::uint64_t data = 0;
  std::uint64_t key = 0;
  REQUIRE(d.create(alice, aliceSession, dataTemplate("data", true), &data) == CKR_OK);
  REQUIRE(d.create(alice, aliceSession, keyTemplate("key", true), &key) == CKR_OK);
  wire::ObjectSizeReply size;
  CHECK(rvOf([&] { d.service->GetObjectSize(bob, {bobSession, data}, size); }) == CKR_OK);
  CHECK(size.size > 0);
  CHECK(rvOf([&] { d.service->GetObjectSize(alice, {aliceSession, key}, size); }) == CKR_INFORMATION_SENSITIVE);
  CHECK(rvOf([&] { d.service->GetObjectSize(bob, {bobSession, key}, size); }) == CKR_OBJECT_HANDLE_INVALID);
}

// ---------------------------------------------------------------------------------------------
// Token flags after PIN checks (A)

TEST_CASE("C_GetTokenInfo shows the flags a wrong PIN leaves, at once", "[service][flags]") {
  Daemon d;
  auto client = d.client();
  const auto session = d.open(client);
  wire::GetTokenInfoReply info;
  d.service->GetTokenInfo(client, {kSlot}, info);
  CHECK((info.info.flags & CKF_USER_PIN_COUNT_LOW) == 0);

  SECTION("after C_Login") {
    wire::Empty none;
    CHECK(rvOf([&] { d.service->Login(client, {session, CKU_USER, true, {'0', '0', '0', '0'}}, none); }) ==
          CKR_PIN_INCORRECT);
  }
  SECTION("after C_SetPIN") {
    REQUIRE(d.login(client, session) == CKR_OK);
    wire::Empty none;
    CHECK(rvOf([&] { d.service->SetPin(client, {session, {'0', '0', '0', '0'}, {'5', '6', '7', '8'}}, none); }) ==
          CKR_PIN_INCORRECT);
  }
  d.service->GetTokenInfo(client, {kSlot}, info);
  CHECK((info.info.flags & CKF_USER_PIN_COUNT_LOW) != 0);
}
