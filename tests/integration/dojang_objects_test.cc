// Objects through dojang-pkcs11.so and a real dojangd over SoftHSM: C_CopyObject and
// C_GetObjectSize, templates the module refuses before they travel, an object deleted behind
// dojangd's back, and token flags that follow the token. Changes behind dojangd's back are made
// by this process through SoftHSM directly (dojang's vendor driver, not the dojang module).
#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <ios>
#include <string>
#include <tuple>
#include <vector>

#include "drivers/vendor_module/vendor_driver.h"
#include "src/common/cryptoki/cryptoki.h"
#include "src/common/errors/error.h"
#include "tests/support/dojangd_process.h"
#include "tests/support/softhsm_token.h"
#include "tests/support/token_attributes.h"

namespace {

using dojang::ckRvName;
using dojang::SecureBytes;
using dojang::test::DojangdProcess;
using dojang::test::DojangModule;
using dojang::test::slotWithLabel;
using dojang::test::SoftHsmToken;

constexpr const char* kTokenLabel = "dojang-objects";
constexpr const char* kPin = "1234";
constexpr std::array<CK_BYTE, 10> kP256Params = {0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07};

CK_BBOOL kTrue = CK_TRUE;
CK_BBOOL kFalse = CK_FALSE;

// SoftHSM loaded into this process on its own: what the token says without dojang in between.
struct DirectSoftHsm {
  dojang::vendor::VendorDriver driver{SoftHsmToken::kModulePath};
  std::unique_ptr<dojang::token::Token> token;
  std::unique_ptr<dojang::token::TokenSession> session;

  DirectSoftHsm() {
    for (const auto& slot : driver.slots()) {
      if ((slot.flags & CKF_TOKEN_PRESENT) == 0) {
        continue;
      }
      auto candidate = driver.openToken(slot.key);
      if (candidate->describe().label == kTokenLabel) {
        token = std::move(candidate);
        break;
      }
    }
    REQUIRE(token);
    session = token->openSession();
  }

  std::vector<dojang::token::ObjectId> withLabel(const std::string& label, CK_OBJECT_CLASS objectClass) {
    return session->findObjects({dojang::test::textAttribute(CKA_LABEL, label),
                                 dojang::test::ulongAttribute(CKA_CLASS, objectClass)});
  }
};

struct Fixture {
  SoftHsmToken softhsm{{kTokenLabel, kPin, "12345678"}};
  DojangdProcess daemon{softhsm};
  DojangModule module;
  CK_SLOT_ID slot = 0;
  CK_SESSION_HANDLE session = CK_INVALID_HANDLE;

  Fixture() {
    daemon.exportEnv();
    REQUIRE(module.initialize() == CKR_OK);
    slot = slotWithLabel(p11(), kTokenLabel);
    REQUIRE(p11().C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &session) == CKR_OK);
    REQUIRE(login(kPin) == CKR_OK);
  }
  ~Fixture() {
    (void)p11().C_CloseAllSessions(slot);
    (void)module.finalize();
  }

  [[nodiscard]] CK_FUNCTION_LIST& p11() const { return module.functions(); }

  CK_RV login(std::string pin) const {
    return p11().C_Login(session, CKU_USER, reinterpret_cast<CK_UTF8CHAR_PTR>(pin.data()), pin.size());
  }

  CK_OBJECT_HANDLE createData(std::string label, std::string value) {
    CK_OBJECT_CLASS dataClass = CKO_DATA;
    CK_ATTRIBUTE templ[] = {{CKA_CLASS, &dataClass, sizeof dataClass},
                            {CKA_TOKEN, &kTrue, sizeof kTrue},
                            {CKA_PRIVATE, &kFalse, sizeof kFalse},
                            {CKA_LABEL, label.data(), label.size()},
                            {CKA_VALUE, value.data(), value.size()}};
    CK_OBJECT_HANDLE object = CK_INVALID_HANDLE;
    REQUIRE(p11().C_CreateObject(session, templ, 5, &object) == CKR_OK);
    return object;
  }

  struct KeyPair {
    CK_OBJECT_HANDLE publicKey = CK_INVALID_HANDLE;
    CK_OBJECT_HANDLE privateKey = CK_INVALID_HANDLE;
  };
  KeyPair generate(std::string label) {
    auto params = kP256Params;
    CK_MECHANISM mechanism{CKM_EC_KEY_PAIR_GEN, nullptr, 0};
    CK_ATTRIBUTE publicTemplate[] = {{CKA_TOKEN, &kTrue, sizeof kTrue},
                                     {CKA_VERIFY, &kTrue, sizeof kTrue},
                                     {CKA_LABEL, label.data(), label.size()},
                                     {CKA_ID, label.data(), label.size()},
                                     {CKA_EC_PARAMS, params.data(), params.size()}};
    CK_ATTRIBUTE privateTemplate[] = {{CKA_TOKEN, &kTrue, sizeof kTrue},
                                      {CKA_SIGN, &kTrue, sizeof kTrue},
                                      {CKA_LABEL, label.data(), label.size()},
                                      {CKA_ID, label.data(), label.size()}};
    KeyPair pair;
    const CK_RV rv = p11().C_GenerateKeyPair(session, &mechanism, publicTemplate, 5, privateTemplate, 4,
                                              &pair.publicKey, &pair.privateKey);
    INFO("C_GenerateKeyPair: " << ckRvName(rv) << "\ndojangd log:\n" << daemon.log());
    REQUIRE(rv == CKR_OK);
    return pair;
  }

  std::vector<CK_OBJECT_HANDLE> find(std::vector<CK_ATTRIBUTE> templ, CK_RV& rv) {
    std::vector<CK_OBJECT_HANDLE> found;
    rv = p11().C_FindObjectsInit(session, templ.data(), templ.size());
    if (rv != CKR_OK) {
      return found;
    }
    std::array<CK_OBJECT_HANDLE, 16> batch{};
    CK_ULONG count = 0;
    while ((rv = p11().C_FindObjects(session, batch.data(), batch.size(), &count)) == CKR_OK && count > 0) {
      found.insert(found.end(), batch.begin(), batch.begin() + static_cast<std::ptrdiff_t>(count));
    }
    const CK_RV finalRv = p11().C_FindObjectsFinal(session);
    rv = rv == CKR_OK ? finalRv : rv;
    return found;
  }

  std::string text(CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type, CK_RV& rv) {
    std::array<char, 256> buffer{};
    CK_ATTRIBUTE attribute{type, buffer.data(), buffer.size()};
    rv = p11().C_GetAttributeValue(session, object, &attribute, 1);
    return rv == CKR_OK ? std::string(buffer.data(), attribute.ulValueLen) : std::string();
  }

  CK_BBOOL flag(CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type) {
    CK_BBOOL value = 0xff;
    CK_ATTRIBUTE attribute{type, &value, sizeof value};
    REQUIRE(p11().C_GetAttributeValue(session, object, &attribute, 1) == CKR_OK);
    return value;
  }
};

}  // namespace

TEST_CASE("C_CopyObject copies data and keys, never looser", "[integration][objects]") {
  Fixture f;
  auto& p11 = f.p11();
  const auto data = f.createData("data", "hello");
  std::string copyLabel = "data copy";
  CK_ATTRIBUTE relabel[] = {{CKA_LABEL, copyLabel.data(), copyLabel.size()}};
  CK_OBJECT_HANDLE dataCopy = CK_INVALID_HANDLE;
  REQUIRE(p11.C_CopyObject(f.session, data, relabel, 1, &dataCopy) == CKR_OK);
  CHECK(dataCopy != data);
  CK_RV rv = CKR_OK;
  CHECK(f.text(dataCopy, CKA_LABEL, rv) == "data copy");
  CHECK(f.text(dataCopy, CKA_VALUE, rv) == "hello");
  CHECK(f.text(data, CKA_LABEL, rv) == "data");

  const auto pair = f.generate("key");
  for (auto loosen : {CK_ATTRIBUTE{CKA_SENSITIVE, &kFalse, sizeof kFalse},
                      CK_ATTRIBUTE{CKA_EXTRACTABLE, &kTrue, sizeof kTrue},
                      CK_ATTRIBUTE{CKA_PRIVATE, &kFalse, sizeof kFalse}}) {
    INFO("attribute " << loosen.type);
    CK_OBJECT_HANDLE refused = CK_INVALID_HANDLE;
    CHECK(p11.C_CopyObject(f.session, pair.privateKey, &loosen, 1, &refused) == CKR_ATTRIBUTE_READ_ONLY);
  }
  std::string keyLabel = "key copy";
  CK_ATTRIBUTE keyTemplate[] = {{CKA_LABEL, keyLabel.data(), keyLabel.size()}, {CKA_TOKEN, &kFalse, sizeof kFalse}};
  CK_OBJECT_HANDLE keyCopy = CK_INVALID_HANDLE;
  REQUIRE(p11.C_CopyObject(f.session, pair.privateKey, keyTemplate, 2, &keyCopy) == CKR_OK);
  CHECK(f.flag(keyCopy, CKA_SENSITIVE) == CK_TRUE);
  CHECK(f.flag(keyCopy, CKA_EXTRACTABLE) == CK_FALSE);
  CHECK(f.flag(keyCopy, CKA_PRIVATE) == CK_TRUE);
  CHECK(f.flag(keyCopy, CKA_TOKEN) == CK_FALSE);
  std::array<CK_BYTE, 128> buffer{};
  CK_ATTRIBUTE secret{CKA_VALUE, buffer.data(), buffer.size()};
  CHECK(p11.C_GetAttributeValue(f.session, keyCopy, &secret, 1) == CKR_ATTRIBUTE_SENSITIVE);

  // The copy signs like its original.
  CK_MECHANISM ecdsa{CKM_ECDSA, nullptr, 0};
  std::array<CK_BYTE, 32> hash{};
  hash.fill(0x33);
  std::array<CK_BYTE, 128> signature{};
  CK_ULONG signatureLength = signature.size();
  REQUIRE(p11.C_SignInit(f.session, &ecdsa, keyCopy) == CKR_OK);
  CHECK(p11.C_Sign(f.session, hash.data(), hash.size(), signature.data(), &signatureLength) == CKR_OK);
  REQUIRE(p11.C_VerifyInit(f.session, &ecdsa, pair.publicKey) == CKR_OK);
  CHECK(p11.C_Verify(f.session, hash.data(), hash.size(), signature.data(), signatureLength) == CKR_OK);

  // A token copy needs a read-write session.
  CK_SESSION_HANDLE readOnly = CK_INVALID_HANDLE;
  REQUIRE(p11.C_OpenSession(f.slot, CKF_SERIAL_SESSION, nullptr, nullptr, &readOnly) == CKR_OK);
  CK_OBJECT_HANDLE refused = CK_INVALID_HANDLE;
  CHECK(p11.C_CopyObject(readOnly, data, nullptr, 0, &refused) == CKR_SESSION_READ_ONLY);
  CHECK(p11.C_CopyObject(f.session, data, nullptr, 0, nullptr) == CKR_ARGUMENTS_BAD);
}

TEST_CASE("C_GetObjectSize answers what SoftHSM answers", "[integration][objects]") {
  Fixture f;
  const auto data = f.createData("sized", "twelve bytes");
  const auto pair = f.generate("sized key");
  DirectSoftHsm direct;
  for (const auto& [object, objectClass, label] :
       {std::tuple{data, CK_OBJECT_CLASS{CKO_DATA}, std::string("sized")},
        std::tuple{pair.privateKey, CK_OBJECT_CLASS{CKO_PRIVATE_KEY}, std::string("sized key")}}) {
    INFO("object " << label);
    CK_ULONG size = 0;
    const CK_RV rv = f.p11().C_GetObjectSize(f.session, object, &size);
    const SecureBytes directPin{std::string_view(kPin)};
    if (objectClass == CKO_PRIVATE_KEY) {
      direct.token->login(CKU_USER, &directPin);
    }
    const auto ids = direct.withLabel(label, objectClass);
    REQUIRE(ids.size() == 1);
    CK_ULONG directSize = 0;
    CK_RV directRv = CKR_OK;
    try {
      directSize = direct.session->objectSize(ids[0]);
    } catch (const dojang::Error& error) {
      directRv = error.rv();
    }
    CHECK(ckRvName(rv) == ckRvName(directRv));
    if (rv == CKR_OK) {
      CHECK(size == directSize);
    }
  }
  CHECK(f.p11().C_GetObjectSize(f.session, data, nullptr) == CKR_ARGUMENTS_BAD);
  CK_ULONG size = 0;
  CHECK(f.p11().C_GetObjectSize(f.session, 0x7fff'fff0, &size) == CKR_OBJECT_HANDLE_INVALID);
}

TEST_CASE("the module refuses duplicate and oversized templates before they travel", "[integration][objects]") {
  Fixture f;
  auto& p11 = f.p11();
  CK_OBJECT_CLASS dataClass = CKO_DATA;
  CK_OBJECT_CLASS keyClass = CKO_PRIVATE_KEY;
  CK_OBJECT_HANDLE object = CK_INVALID_HANDLE;
  CK_ATTRIBUTE privateTwice[] = {{CKA_CLASS, &dataClass, sizeof dataClass},
                                 {CKA_TOKEN, &kTrue, sizeof kTrue},
                                 {CKA_PRIVATE, &kFalse, sizeof kFalse},
                                 {CKA_PRIVATE, &kTrue, sizeof kTrue}};
  CHECK(p11.C_CreateObject(f.session, privateTwice, 4, &object) == CKR_TEMPLATE_INCONSISTENT);
  CK_ATTRIBUTE classTwice[] = {{CKA_CLASS, &dataClass, sizeof dataClass}, {CKA_CLASS, &keyClass, sizeof keyClass}};
  CHECK(p11.C_CreateObject(f.session, classTwice, 2, &object) == CKR_TEMPLATE_INCONSISTENT);
  CHECK(p11.C_FindObjectsInit(f.session, classTwice, 2) == CKR_TEMPLATE_INCONSISTENT);

  const auto data = f.createData("many", "x");
  std::vector<CK_ATTRIBUTE> many(257);
  std::vector<CK_BYTE> byte(257, 1);
  for (std::size_t i = 0; i < many.size(); ++i) {
    many[i] = {CKA_VENDOR_DEFINED + i, &byte[i], 1};
  }
  CHECK(p11.C_FindObjectsInit(f.session, many.data(), many.size()) == CKR_TEMPLATE_INCONSISTENT);
  CHECK(p11.C_GetAttributeValue(f.session, data, many.data(), many.size()) == CKR_ARGUMENTS_BAD);
  CHECK(p11.C_GetAttributeValue(f.session, data, many.data(), 256) == CKR_ATTRIBUTE_TYPE_INVALID);
  CK_RV rv = CKR_OK;
  CHECK(f.text(data, CKA_LABEL, rv) == "many");
}

// Regression: find skipped a vanished object in the facts lookup but not in the attribute fetch
// after it, so one deleted public key broke C_FindObjects for every client.
TEST_CASE("a key deleted behind dojangd's back leaves searches working", "[integration][objects]") {
  Fixture f;
  const auto doomed = f.generate("doomed");
  const auto kept = f.generate("kept");
  CK_OBJECT_CLASS publicClass = CKO_PUBLIC_KEY;
  CK_RV rv = CKR_OK;
  const auto publicKeys = f.find({{CKA_CLASS, &publicClass, sizeof publicClass}}, rv);
  REQUIRE(rv == CKR_OK);
  REQUIRE(publicKeys.size() == 2);  // dojangd knows both now

  {
    DirectSoftHsm direct;
    const auto ids = direct.withLabel("doomed", CKO_PUBLIC_KEY);
    REQUIRE(ids.size() == 1);
    direct.session->destroyObject(ids[0]);
  }

  std::string keptId = "kept";
  const auto found = f.find({{CKA_ID, keptId.data(), keptId.size()}}, rv);
  INFO("dojangd log:\n" << f.daemon.log());
  CHECK(ckRvName(rv) == ckRvName(CKR_OK));
  CHECK(std::find(found.begin(), found.end(), kept.publicKey) != found.end());
  const auto stillThere = f.find({{CKA_CLASS, &publicClass, sizeof publicClass}}, rv);
  CHECK(ckRvName(rv) == ckRvName(CKR_OK));
  CHECK(stillThere == std::vector<CK_OBJECT_HANDLE>{kept.publicKey});
  (void)f.text(doomed.publicKey, CKA_LABEL, rv);
  CHECK(ckRvName(rv) == ckRvName(CKR_OBJECT_HANDLE_INVALID));
}

// Regression: dojangd read the token's flags once, so a wrong PIN's CKF_USER_PIN_COUNT_LOW, which
// SoftHSM reports at once, never showed through dojang.
TEST_CASE("C_GetTokenInfo shows the flags SoftHSM sets after a wrong PIN", "[integration][objects]") {
  Fixture f;
  auto& p11 = f.p11();
  CK_TOKEN_INFO info{};
  REQUIRE(p11.C_GetTokenInfo(f.slot, &info) == CKR_OK);
  CHECK((info.flags & CKF_USER_PIN_COUNT_LOW) == 0);
  REQUIRE(p11.C_Logout(f.session) == CKR_OK);  // so that the token itself checks the next PIN
  CHECK(f.login("9999") == CKR_PIN_INCORRECT);
  REQUIRE(p11.C_GetTokenInfo(f.slot, &info) == CKR_OK);
  DirectSoftHsm direct;
  const auto flags = direct.token->describe().flags;
  INFO("SoftHSM flags " << std::hex << flags << ", through dojang " << info.flags);
  CHECK((flags & CKF_USER_PIN_COUNT_LOW) != 0);
  CHECK(info.flags == flags);
  CHECK(f.login(kPin) == CKR_OK);
  REQUIRE(p11.C_GetTokenInfo(f.slot, &info) == CKR_OK);
  CHECK((info.flags & CKF_USER_PIN_COUNT_LOW) == 0);
}
