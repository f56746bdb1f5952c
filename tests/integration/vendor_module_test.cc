// drivers/vendor_module against a real module: SoftHSM 2 with a fresh token per test case, and
// the refusals against p11-kit's proxy and ourselves.
#include <catch2/catch.hpp>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "drivers/vendor_module/vendor_driver.h"
#include "drivers/vendor_module/vendor_module.h"
#include "drivers/vendor_module/vendor_session.h"
#include "drivers/vendor_module/vendor_token.h"
#include "src/common/errors/error.h"
#include "src/common/ossl/owners.h"
#include "tests/support/softhsm_token.h"
#include "tests/support/token_attributes.h"

namespace {

using dojang::Error;
using dojang::ErrorKind;
using dojang::OperationKind;
using dojang::SecureBytes;
using dojang::test::boolAttribute;
using dojang::test::boolOf;
using dojang::test::bytesAttribute;
using dojang::test::SoftHsmToken;
using dojang::test::textAttribute;
using dojang::test::ulongAttribute;
using dojang::test::ulongOf;
using dojang::token::AttributeList;
using dojang::token::AttributeRead;
using dojang::token::Bytes;
using dojang::token::KeyPair;
using dojang::token::Mechanism;
using dojang::token::MechanismParameters;
using dojang::token::ObjectId;
using dojang::token::TokenSession;
using dojang::vendor::VendorDriver;
using dojang::vendor::VendorModule;

constexpr const char* kProxyPath = "/usr/lib/x86_64-linux-gnu/p11-kit-proxy.so";

// DER of OID 1.2.840.10045.3.1.7 (prime256v1), as CKA_EC_PARAMS wants it.
const Bytes kP256Params = {0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07};

// Run through meson, DOJANG_MOCK_MODULE names tests/integration/vendor_module_mock.so.
#define SKIP_MOCK()                                             \
  do {                                                          \
    WARN("DOJANG_MOCK_MODULE not set; run through meson test"); \
    return;                                                     \
  } while (false)

Bytes bytesOf(std::string_view text) { return Bytes(text.begin(), text.end()); }

template <class Call>
CK_RV rvOf(Call&& call) {
  try {
    call();
  } catch (const Error& error) {
    return error.rv();
  }
  return CKR_OK;
}

// A fresh token, the driver over SoftHSM, the token opened and a session on it.
struct Fixture {
  SoftHsmToken softhsm;
  VendorDriver driver{SoftHsmToken::kModulePath};
  std::string slotKey = findSlotKey();
  std::unique_ptr<dojang::token::Token> token = driver.openToken(slotKey);
  std::unique_ptr<TokenSession> session = token->openSession();

  std::string findSlotKey() {
    REQUIRE(softhsm.slotId().has_value());
    return std::to_string(*softhsm.slotId());
  }
  void loginUser() {
    const SecureBytes pin(softhsm.pin());
    token->login(CKU_USER, &pin);
  }
};

Mechanism plain(CK_MECHANISM_TYPE type) { return Mechanism{type, {}}; }

Mechanism pssSha256() {
  Mechanism mechanism{CKM_SHA256_RSA_PKCS_PSS, {}};
  mechanism.params.kind = MechanismParameters::Kind::Pss;
  mechanism.params.hashAlg = CKM_SHA256;
  mechanism.params.mgf = CKG_MGF1_SHA256;
  mechanism.params.saltLength = 32;
  return mechanism;
}

KeyPair generateEc(TokenSession& session, std::string_view id, bool canSign = true, bool alwaysAuthenticate = false) {
  const AttributeList publicTemplate = {
      ulongAttribute(CKA_CLASS, CKO_PUBLIC_KEY), ulongAttribute(CKA_KEY_TYPE, CKK_EC),
      boolAttribute(CKA_TOKEN, true),           boolAttribute(CKA_VERIFY, true),
      bytesAttribute(CKA_EC_PARAMS, kP256Params), textAttribute(CKA_ID, id),
  };
  AttributeList privateTemplate = {
      ulongAttribute(CKA_CLASS, CKO_PRIVATE_KEY), ulongAttribute(CKA_KEY_TYPE, CKK_EC),
      boolAttribute(CKA_TOKEN, true),            boolAttribute(CKA_PRIVATE, true),
      boolAttribute(CKA_SENSITIVE, true),        boolAttribute(CKA_EXTRACTABLE, false),
      boolAttribute(CKA_SIGN, canSign),          textAttribute(CKA_ID, id),
  };
  if (alwaysAuthenticate) {
    privateTemplate.push_back(boolAttribute(CKA_ALWAYS_AUTHENTICATE, true));
  }
  return session.generateKeyPair(plain(CKM_EC_KEY_PAIR_GEN), publicTemplate, privateTemplate, {});
}

KeyPair generateRsa(TokenSession& session, std::string_view id) {
  const AttributeList publicTemplate = {
      ulongAttribute(CKA_CLASS, CKO_PUBLIC_KEY),
      ulongAttribute(CKA_KEY_TYPE, CKK_RSA),
      boolAttribute(CKA_TOKEN, true),
      boolAttribute(CKA_VERIFY, true),
      boolAttribute(CKA_ENCRYPT, true),
      ulongAttribute(CKA_MODULUS_BITS, 2048),
      bytesAttribute(CKA_PUBLIC_EXPONENT, Bytes{0x01, 0x00, 0x01}),
      textAttribute(CKA_ID, id),
  };
  const AttributeList privateTemplate = {
      ulongAttribute(CKA_CLASS, CKO_PRIVATE_KEY), ulongAttribute(CKA_KEY_TYPE, CKK_RSA),
      boolAttribute(CKA_TOKEN, true),            boolAttribute(CKA_PRIVATE, true),
      boolAttribute(CKA_SENSITIVE, true),        boolAttribute(CKA_EXTRACTABLE, false),
      boolAttribute(CKA_SIGN, true),             boolAttribute(CKA_DECRYPT, true),
      textAttribute(CKA_ID, id),
  };
  return session.generateKeyPair(plain(CKM_RSA_PKCS_KEY_PAIR_GEN), publicTemplate, privateTemplate, {});
}

const AttributeRead& readOf(const std::vector<AttributeRead>& reads, CK_ATTRIBUTE_TYPE type) {
  const auto found = std::find_if(reads.begin(), reads.end(), [type](const AttributeRead& r) { return r.type == type; });
  REQUIRE(found != reads.end());
  return *found;
}

Bytes sha256(std::span<const std::uint8_t> data) {
  Bytes hash(32);
  unsigned int length = 0;
  REQUIRE(EVP_Digest(data.data(), data.size(), hash.data(), &length, EVP_sha256(), nullptr) == 1);
  return hash;
}

// --- OpenSSL side: the public key as EVP_PKEY, to check the token against an independent party.
using Pkey = dojang::PkeyPtr;
using PkeyCtx = dojang::PkeyCtxPtr;

Pkey rsaPublicKey(TokenSession& session, ObjectId publicKey) {
  const CK_ATTRIBUTE_TYPE types[] = {CKA_MODULUS, CKA_PUBLIC_EXPONENT};
  const std::vector<AttributeRead> reads = session.readAttributes(publicKey, types);
  REQUIRE(reads[0].status == CKR_OK);
  REQUIRE(reads[1].status == CKR_OK);
  BIGNUM* n = BN_bin2bn(reads[0].value.data(), static_cast<int>(reads[0].value.size()), nullptr);
  BIGNUM* e = BN_bin2bn(reads[1].value.data(), static_cast<int>(reads[1].value.size()), nullptr);
  OSSL_PARAM_BLD* builder = OSSL_PARAM_BLD_new();
  OSSL_PARAM_BLD_push_BN(builder, OSSL_PKEY_PARAM_RSA_N, n);
  OSSL_PARAM_BLD_push_BN(builder, OSSL_PKEY_PARAM_RSA_E, e);
  OSSL_PARAM* params = OSSL_PARAM_BLD_to_param(builder);
  PkeyCtx ctx(EVP_PKEY_CTX_new_from_name(nullptr, "RSA", nullptr));
  EVP_PKEY* key = nullptr;
  const bool ok = ctx && EVP_PKEY_fromdata_init(ctx.get()) == 1 &&
                  EVP_PKEY_fromdata(ctx.get(), &key, EVP_PKEY_PUBLIC_KEY, params) == 1;
  OSSL_PARAM_free(params);
  OSSL_PARAM_BLD_free(builder);
  BN_free(n);
  BN_free(e);
  REQUIRE(ok);
  return Pkey(key);
}

bool opensslVerifyRsa(EVP_PKEY* key, bool pss, std::span<const std::uint8_t> data, std::span<const std::uint8_t> sig) {
  dojang::MdCtxPtr md(EVP_MD_CTX_new());
  EVP_PKEY_CTX* pctx = nullptr;
  if (EVP_DigestVerifyInit(md.get(), &pctx, EVP_sha256(), nullptr, key) != 1) {
    return false;
  }
  if (pss) {
    EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING);
    EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 32);
    EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256());
  }
  return EVP_DigestVerify(md.get(), sig.data(), sig.size(), data.data(), data.size()) == 1;
}

Bytes opensslEncryptOaep(EVP_PKEY* key, const EVP_MD* hash, std::span<const std::uint8_t> plain) {
  PkeyCtx ctx(EVP_PKEY_CTX_new(key, nullptr));
  REQUIRE(EVP_PKEY_encrypt_init(ctx.get()) == 1);
  REQUIRE(EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_OAEP_PADDING) == 1);
  REQUIRE(EVP_PKEY_CTX_set_rsa_oaep_md(ctx.get(), hash) == 1);
  REQUIRE(EVP_PKEY_CTX_set_rsa_mgf1_md(ctx.get(), hash) == 1);
  std::size_t length = 0;
  REQUIRE(EVP_PKEY_encrypt(ctx.get(), nullptr, &length, plain.data(), plain.size()) == 1);
  Bytes out(length);
  REQUIRE(EVP_PKEY_encrypt(ctx.get(), out.data(), &length, plain.data(), plain.size()) == 1);
  out.resize(length);
  return out;
}

}  // namespace

TEST_CASE("vendor module: slots, token description and mechanisms", "[vendor_module]") {
  Fixture f;
  CHECK(f.driver.location() == SoftHsmToken::kModulePath);
  CHECK(f.driver.name().find("SoftHSM") != std::string::npos);
  CHECK(f.driver.module().info().cryptokiVersion.major == 2);

  const auto slots = f.driver.slots();
  const auto ours = std::find_if(slots.begin(), slots.end(), [&](const auto& s) { return s.key == f.slotKey; });
  REQUIRE(ours != slots.end());
  CHECK((ours->flags & CKF_TOKEN_PRESENT) != 0);
  CHECK_FALSE(ours->description.empty());
  CHECK(ours->description.back() != ' ');

  const auto description = f.token->describe();
  CHECK(description.label == f.softhsm.label());
  CHECK(description.manufacturer == "SoftHSM project");
  CHECK(description.model == "SoftHSM v2");
  CHECK_FALSE(description.serialNumber.empty());
  CHECK((description.flags & CKF_TOKEN_INITIALIZED) != 0);
  CHECK((description.flags & CKF_USER_PIN_INITIALIZED) != 0);
  CHECK((description.flags & CKF_LOGIN_REQUIRED) != 0);
  CHECK(description.minPinLen >= 4);

  const auto mechanisms = f.token->mechanisms();
  const auto find = [&](CK_MECHANISM_TYPE type) {
    return std::find_if(mechanisms.begin(), mechanisms.end(), [type](const auto& m) { return m.type == type; });
  };
  REQUIRE(find(CKM_ECDSA) != mechanisms.end());
  CHECK((find(CKM_ECDSA)->info.flags & CKF_SIGN) != 0);
  REQUIRE(find(CKM_RSA_PKCS) != mechanisms.end());
  CHECK(find(CKM_RSA_PKCS)->info.ulMaxKeySize >= 2048);

  CHECK(rvOf([&] { (void)f.driver.openToken("not-a-slot"); }) == CKR_SLOT_ID_INVALID);
  CHECK(rvOf([&] { (void)f.driver.openToken("4294967294"); }) == CKR_SLOT_ID_INVALID);
}

TEST_CASE("vendor module: waiting for slot changes", "[vendor_module]") {
  Fixture f;
  SECTION("cancelWait ends a wait") {
    std::atomic<bool> result{true};
    const auto start = std::chrono::steady_clock::now();
    std::thread waiter([&] { result = f.driver.waitForChange(); });
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    f.driver.cancelWait();
    waiter.join();
    CHECK_FALSE(result);
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(2));
    CHECK_FALSE(f.driver.waitForChange());  // cancellation is for good
  }
  // (A running SoftHSM does not notice tokens another process initialises, so the slot-list
  // comparison in waitForChange() cannot be shown here.)
}

TEST_CASE("vendor module: login and logout", "[vendor_module]") {
  Fixture f;
  const SecureBytes wrong(std::string_view("999999"));
  try {
    f.token->login(CKU_USER, &wrong);
    FAIL("login with a wrong PIN succeeded");
  } catch (const Error& error) {
    CHECK(error.rv() == CKR_PIN_INCORRECT);
    CHECK(error.kind() == ErrorKind::PinIncorrect);
  }
  // Private objects are invisible before login.
  CHECK(f.session->findObjects({ulongAttribute(CKA_CLASS, CKO_PRIVATE_KEY)}).empty());
  f.loginUser();
  f.loginUser();  // CKR_USER_ALREADY_LOGGED_IN counts as success
  generateEc(*f.session, "login");
  CHECK(f.session->findObjects({ulongAttribute(CKA_CLASS, CKO_PRIVATE_KEY)}).size() == 1);
  f.token->logout();
  f.token->logout();  // CKR_USER_NOT_LOGGED_IN counts as success
  CHECK(f.session->findObjects({ulongAttribute(CKA_CLASS, CKO_PRIVATE_KEY)}).empty());
}

TEST_CASE("vendor module: key generation and attribute reads", "[vendor_module]") {
  Fixture f;
  f.loginUser();
  const KeyPair ec = generateEc(*f.session, "ec");
  const KeyPair rsa = generateRsa(*f.session, "rsa");

  SECTION("private keys are sensitive, never extractable and local") {
    for (const auto& [key, secret] : {std::pair{ec.privateKey, CK_ATTRIBUTE_TYPE{CKA_VALUE}},
                                      std::pair{rsa.privateKey, CK_ATTRIBUTE_TYPE{CKA_PRIVATE_EXPONENT}}}) {
      const CK_ATTRIBUTE_TYPE types[] = {CKA_SENSITIVE, CKA_EXTRACTABLE, CKA_LOCAL, secret, CKA_ID};
      const auto reads = f.session->readAttributes(key, types);
      CHECK(boolOf(readOf(reads, CKA_SENSITIVE)) == true);
      CHECK(boolOf(readOf(reads, CKA_EXTRACTABLE)) == false);
      CHECK(boolOf(readOf(reads, CKA_LOCAL)) == true);
      CHECK(readOf(reads, secret).status == CKR_ATTRIBUTE_SENSITIVE);
      CHECK(readOf(reads, secret).value.empty());
      CHECK(readOf(reads, CKA_ID).status == CKR_OK);
    }
  }

  SECTION("one read with readable, sensitive and invalid attributes") {
    const CK_ATTRIBUTE_TYPE types[] = {CKA_CLASS, CKA_PRIVATE_EXPONENT, CKA_CERTIFICATE_TYPE,
                                       CKA_MODULUS, CKA_WRAP_TEMPLATE, CKA_PRIME_1};
    const auto reads = f.session->readAttributes(rsa.privateKey, types);
    REQUIRE(reads.size() == 6);
    CHECK(ulongOf(reads[0]) == CKO_PRIVATE_KEY);
    CHECK(reads[1].status == CKR_ATTRIBUTE_SENSITIVE);
    CHECK(reads[2].status == CKR_ATTRIBUTE_TYPE_INVALID);
    CHECK(reads[3].status == CKR_OK);
    CHECK(reads[3].value.size() == 256);
    CHECK(reads[4].status == CKR_ATTRIBUTE_TYPE_INVALID);
    CHECK(reads[5].status == CKR_ATTRIBUTE_SENSITIVE);
  }

  SECTION("public keys read back their parameters") {
    const CK_ATTRIBUTE_TYPE types[] = {CKA_EC_PARAMS, CKA_EC_POINT, CKA_KEY_TYPE};
    const auto reads = f.session->readAttributes(ec.publicKey, types);
    CHECK(reads[0].value == kP256Params);
    CHECK(reads[1].value.size() == 67);  // OCTET STRING of an uncompressed P-256 point
    CHECK(ulongOf(reads[2]) == CKK_EC);
  }

  SECTION("find by CKA_ID and class") {
    const auto found = f.session->findObjects({textAttribute(CKA_ID, "rsa")});
    CHECK(found.size() == 2);
    const auto privateKeys = f.session->findObjects({ulongAttribute(CKA_CLASS, CKO_PRIVATE_KEY)});
    CHECK(privateKeys.size() == 2);
    CHECK(f.session->findObjects({}).size() == 4);
    CHECK(f.session->findObjects({textAttribute(CKA_ID, "none")}).empty());
  }

  SECTION("write attributes") {
    f.session->writeAttributes(ec.publicKey, {textAttribute(CKA_LABEL, "renamed")});
    const CK_ATTRIBUTE_TYPE types[] = {CKA_LABEL};
    CHECK(f.session->readAttributes(ec.publicKey, types)[0].value == bytesOf("renamed"));
    CHECK(rvOf([&] { f.session->writeAttributes(ec.privateKey, {boolAttribute(CKA_SENSITIVE, false)}); }) ==
          CKR_ATTRIBUTE_READ_ONLY);
  }

  SECTION("reading a missing object fails") {
    const CK_ATTRIBUTE_TYPE types[] = {CKA_CLASS};
    CHECK(rvOf([&] { (void)f.session->readAttributes(0x7fff1234, types); }) == CKR_OBJECT_HANDLE_INVALID);
  }
}

TEST_CASE("vendor module: sign, verify, decrypt, digest, random", "[vendor_module]") {
  Fixture f;
  f.loginUser();
  const Bytes message = bytesOf("the quick brown fox signs with dojang");

  SECTION("ECDSA over a SHA-256 hash") {
    const KeyPair ec = generateEc(*f.session, "ec");
    const Bytes hash = f.session->digest(plain(CKM_SHA256), message);
    CHECK(hash == sha256(message));
    f.session->checkKeyOperation(OperationKind::Sign, plain(CKM_ECDSA), ec.privateKey);
    const Bytes signature = f.session->sign(plain(CKM_ECDSA), ec.privateKey, hash, {});
    CHECK(signature.size() == 64);  // raw r || s
    f.session->verify(plain(CKM_ECDSA), ec.publicKey, hash, signature);
    Bytes tampered = signature;
    tampered[10] ^= 0x01;
    try {
      f.session->verify(plain(CKM_ECDSA), ec.publicKey, hash, tampered);
      FAIL("tampered signature verified");
    } catch (const Error& error) {
      CHECK(error.rv() == CKR_SIGNATURE_INVALID);
    }
    // The session is usable again after the failed verification.
    f.session->verify(plain(CKM_ECDSA), ec.publicKey, hash, signature);
  }

  SECTION("RSA PKCS#1 v1.5 and PSS, checked by OpenSSL too") {
    const KeyPair rsa = generateRsa(*f.session, "rsa");
    const Pkey publicKey = rsaPublicKey(*f.session, rsa.publicKey);

    const Bytes pkcs1 = f.session->sign(plain(CKM_SHA256_RSA_PKCS), rsa.privateKey, message, {});
    CHECK(pkcs1.size() == 256);
    f.session->verify(plain(CKM_SHA256_RSA_PKCS), rsa.publicKey, message, pkcs1);
    CHECK(opensslVerifyRsa(publicKey.get(), false, message, pkcs1));

    f.session->checkKeyOperation(OperationKind::Sign, pssSha256(), rsa.privateKey);
    const Bytes pss = f.session->sign(pssSha256(), rsa.privateKey, message, {});
    CHECK(pss.size() == 256);
    f.session->verify(pssSha256(), rsa.publicKey, message, pss);
    CHECK(opensslVerifyRsa(publicKey.get(), true, message, pss));
    CHECK(rvOf([&] { f.session->verify(pssSha256(), rsa.publicKey, bytesOf("other"), pss); }) ==
          CKR_SIGNATURE_INVALID);
  }

  SECTION("RSA OAEP decryption of data OpenSSL encrypted") {
    const KeyPair rsa = generateRsa(*f.session, "rsa");
    const Pkey publicKey = rsaPublicKey(*f.session, rsa.publicKey);
    const Bytes secret = bytesOf("session key material");
    Mechanism oaep{CKM_RSA_PKCS_OAEP, {}};
    oaep.params.kind = MechanismParameters::Kind::Oaep;
    oaep.params.hashAlg = CKM_SHA_1;  // SoftHSM 2.6 decrypts OAEP with SHA-1 only
    oaep.params.mgf = CKG_MGF1_SHA1;
    oaep.params.sourceType = CKZ_DATA_SPECIFIED;
    f.session->checkKeyOperation(OperationKind::Decrypt, oaep, rsa.privateKey);
    const Bytes ciphertext = opensslEncryptOaep(publicKey.get(), EVP_sha1(), secret);
    CHECK(f.session->decrypt(oaep, rsa.privateKey, ciphertext, {}) == secret);
  }

  SECTION("random bytes") {
    const Bytes a = f.session->generateRandom(32);
    const Bytes b = f.session->generateRandom(32);
    CHECK(a.size() == 32);
    CHECK(a != b);
    CHECK(f.session->generateRandom(0).empty());
  }
}

TEST_CASE("vendor module: checkKeyOperation reports what the Init call would", "[vendor_module]") {
  Fixture f;
  f.loginUser();
  const KeyPair ec = generateEc(*f.session, "ec");
  const KeyPair rsa = generateRsa(*f.session, "rsa");
  const KeyPair noSign = generateEc(*f.session, "nosign", false);
  auto& session = *f.session;

  CHECK(rvOf([&] { session.checkKeyOperation(OperationKind::Sign, plain(CKM_ECDSA), ec.privateKey); }) == CKR_OK);
  CHECK(rvOf([&] { session.checkKeyOperation(OperationKind::Verify, plain(CKM_ECDSA), ec.publicKey); }) == CKR_OK);
  CHECK(rvOf([&] { session.checkKeyOperation(OperationKind::Decrypt, plain(CKM_RSA_PKCS), rsa.privateKey); }) == CKR_OK);
  CHECK(rvOf([&] { session.checkKeyOperation(OperationKind::Sign, plain(CKM_ECDSA), 0x7fff1234); }) ==
        CKR_KEY_HANDLE_INVALID);
  CHECK(rvOf([&] { session.checkKeyOperation(OperationKind::Sign, plain(CKM_ECDSA), rsa.privateKey); }) ==
        CKR_KEY_TYPE_INCONSISTENT);
  CHECK(rvOf([&] { session.checkKeyOperation(OperationKind::Sign, plain(CKM_SHA256_RSA_PKCS), ec.privateKey); }) ==
        CKR_KEY_TYPE_INCONSISTENT);
  CHECK(rvOf([&] { session.checkKeyOperation(OperationKind::Sign, plain(CKM_ECDSA), ec.publicKey); }) ==
        CKR_KEY_TYPE_INCONSISTENT);
  CHECK(rvOf([&] { session.checkKeyOperation(OperationKind::Sign, plain(CKM_ECDSA), noSign.privateKey); }) ==
        CKR_KEY_FUNCTION_NOT_PERMITTED);
  CHECK(rvOf([&] { session.checkKeyOperation(OperationKind::Decrypt, plain(CKM_ECDSA), ec.privateKey); }) ==
        CKR_MECHANISM_INVALID);
  CHECK(rvOf([&] { session.checkKeyOperation(OperationKind::Sign, plain(CKM_VENDOR_DEFINED | 0x1234), ec.privateKey); }) ==
        CKR_MECHANISM_INVALID);
  // Nothing was left active: a real operation still starts.
  const Bytes hash = sha256(bytesOf("after the checks"));
  CHECK(session.sign(plain(CKM_ECDSA), ec.privateKey, hash, {}).size() == 64);
}

TEST_CASE("vendor module: certificate objects", "[vendor_module]") {
  Fixture f;
  f.loginUser();
  const Bytes der = {0x30, 0x03, 0x02, 0x01, 0x05};  // the token does not parse it
  const AttributeList certificate = {
      ulongAttribute(CKA_CLASS, CKO_CERTIFICATE), ulongAttribute(CKA_CERTIFICATE_TYPE, CKC_X_509),
      boolAttribute(CKA_TOKEN, true),            textAttribute(CKA_LABEL, "test certificate"),
      textAttribute(CKA_ID, "cert"),             bytesAttribute(CKA_SUBJECT, Bytes{0x30, 0x00}),
      bytesAttribute(CKA_VALUE, der),
  };
  const ObjectId handle = f.session->createObject(certificate);
  const auto found = f.session->findObjects({ulongAttribute(CKA_CLASS, CKO_CERTIFICATE)});
  REQUIRE(found.size() == 1);
  CHECK(found[0] == handle);
  const CK_ATTRIBUTE_TYPE types[] = {CKA_VALUE, CKA_LABEL, CKA_ID};
  const auto reads = f.session->readAttributes(handle, types);
  CHECK(reads[0].value == der);
  CHECK(reads[1].value == bytesOf("test certificate"));
  // Another session sees the same object under the same handle.
  auto other = f.token->openSession();
  CHECK(other->findObjects({textAttribute(CKA_ID, "cert")}) == std::vector<ObjectId>{handle});

  f.session->destroyObject(handle);
  CHECK(f.session->findObjects({ulongAttribute(CKA_CLASS, CKO_CERTIFICATE)}).empty());
  CHECK(rvOf([&] { f.session->destroyObject(handle); }) == CKR_OBJECT_HANDLE_INVALID);
}

TEST_CASE("vendor module: PIN change and context-specific login", "[vendor_module]") {
  Fixture f;
  f.loginUser();

  SECTION("setPin") {
    const SecureBytes oldPin(f.softhsm.pin());
    const SecureBytes newPin(std::string_view("654321"));
    f.session->setPin(oldPin, newPin);
    f.token->logout();
    CHECK(rvOf([&] { f.token->login(CKU_USER, &oldPin); }) == CKR_PIN_INCORRECT);
    f.token->login(CKU_USER, &newPin);
  }

  SECTION("CKA_ALWAYS_AUTHENTICATE keys need the PIN again for each operation") {
    const KeyPair key = generateEc(*f.session, "always", true, true);
    const Bytes hash = sha256(bytesOf("needs a fresh PIN"));
    CHECK(rvOf([&] { (void)f.session->sign(plain(CKM_ECDSA), key.privateKey, hash, {}); }) == CKR_USER_NOT_LOGGED_IN);

    const SecureBytes wrong(std::string_view("000000"));
    const SecureBytes right(f.softhsm.pin());
    f.session->checkKeyOperation(OperationKind::Sign, plain(CKM_ECDSA), key.privateKey);
    CHECK(rvOf([&] { (void)f.session->sign(plain(CKM_ECDSA), key.privateKey, hash, {true, &wrong}); }) ==
          CKR_PIN_INCORRECT);
    const Bytes signature = f.session->sign(plain(CKM_ECDSA), key.privateKey, hash, {true, &right});
    f.session->verify(plain(CKM_ECDSA), key.publicKey, hash, signature);
    // The PIN was for that signature only.
    CHECK(rvOf([&] { (void)f.session->sign(plain(CKM_ECDSA), key.privateKey, hash, {}); }) == CKR_USER_NOT_LOGGED_IN);
  }
}

// The PIN state comes from SoftHSM's CK_TOKEN_INFO flags, read afresh; a wrong PIN says what it
// knows about the tries left (SoftHSM sets only count-low, so nothing here).
TEST_CASE("vendor module: PIN state after a wrong PIN", "[vendor_module]") {
  Fixture f;
  auto pins = f.token->pinState();
  CHECK_FALSE(pins.user.countLow);
  CHECK_FALSE(pins.user.finalTry);
  CHECK_FALSE(pins.user.locked);
  CHECK_FALSE(pins.so.countLow);

  const SecureBytes wrong(std::string_view("000000"));
  try {
    f.token->login(CKU_USER, &wrong);
    FAIL("a wrong PIN was accepted");
  } catch (const Error& error) {
    CHECK(error.rv() == CKR_PIN_INCORRECT);
    CHECK(error.kind() == ErrorKind::PinIncorrect);
    CHECK_FALSE(error.pinRetriesLeft().has_value());
  }
  pins = f.token->pinState();
  CHECK(pins.user.countLow);
  CHECK_FALSE(pins.user.locked);
  CHECK_FALSE(pins.so.countLow);  // the SO PIN was not tried

  f.loginUser();
  CHECK_FALSE(f.token->pinState().user.countLow);
}

TEST_CASE("vendor module: sessions on several threads", "[vendor_module]") {
  Fixture f;
  f.loginUser();
  const KeyPair ec = generateEc(*f.session, "ec");
  const Bytes hash = sha256(bytesOf("threads"));
  std::atomic<int> good{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      auto session = f.token->openSession();
      for (int i = 0; i < 10; ++i) {
        const Bytes signature = session->sign(plain(CKM_ECDSA), ec.privateKey, hash, {});
        session->verify(plain(CKM_ECDSA), ec.publicKey, hash, signature);
        ++good;
      }
    });
  }
  for (auto& thread : threads) {
    thread.join();
  }
  CHECK(good == 40);
}

TEST_CASE("vendor module: a module that cannot lock is initialised plainly and serialised",
          "[vendor_module]") {
  const char* mock = std::getenv("DOJANG_MOCK_MODULE");
  if (mock == nullptr) {
    SKIP_MOCK();
  }
  ::setenv("MOCK_CANT_LOCK", "1", 1);
  VendorDriver driver(mock);
  ::unsetenv("MOCK_CANT_LOCK");
  CHECK(driver.module().serialised());
  CHECK(driver.name() == "dojang tests: mock module");
  CHECK(driver.slots().empty());
  // No C_WaitForSlotEvent at all: the daemon has to poll.
  CHECK_FALSE(driver.waitForChange());
}

TEST_CASE("vendor module: refuses modules that would loop back into dojang", "[vendor_module]") {
  SECTION("p11-kit-proxy.so") {
    try {
      VendorModule proxy(kProxyPath);
      FAIL("p11-kit-proxy.so was loaded");
    } catch (const Error& error) {
      const std::string message = error.what();
      CHECK(message.find("p11-kit") != std::string::npos);
      CHECK(message.find("list the real vendor modules") != std::string::npos);
    }
  }

  SECTION("$DOJANG_SELF_MODULE") {
    SoftHsmToken softhsm;
    ::setenv("DOJANG_SELF_MODULE", SoftHsmToken::kModulePath, 1);
    try {
      VendorDriver self(SoftHsmToken::kModulePath);
      ::unsetenv("DOJANG_SELF_MODULE");
      FAIL("the module named by DOJANG_SELF_MODULE was loaded");
    } catch (const Error& error) {
      ::unsetenv("DOJANG_SELF_MODULE");
      CHECK(std::string(error.what()).find("dojang's own PKCS#11 module") != std::string::npos);
    }
    // Once the variable is gone the same module loads.
    VendorDriver driver(SoftHsmToken::kModulePath);
    CHECK_FALSE(driver.slots().empty());
  }

  SECTION("a module already loaded in this process") {
    SoftHsmToken softhsm;
    VendorDriver first(SoftHsmToken::kModulePath);
    CHECK(rvOf([] { VendorDriver second(SoftHsmToken::kModulePath); }) == CKR_CRYPTOKI_ALREADY_INITIALIZED);
    CHECK_FALSE(first.slots().empty());
  }

  SECTION("dojang-pkcs11.so, recognised by its private interface") {
    const char* mock = std::getenv("DOJANG_MOCK_MODULE");
    if (mock == nullptr) {
      SKIP_MOCK();
    }
    ::setenv("MOCK_OFFER_SELF", "1", 1);
    const CK_RV refused = rvOf([&] { VendorModule self(mock); });
    ::unsetenv("MOCK_OFFER_SELF");
    CHECK(refused == CKR_GENERAL_ERROR);
    try {
      ::setenv("MOCK_OFFER_SELF", "1", 1);
      VendorModule self(mock);
      ::unsetenv("MOCK_OFFER_SELF");
      FAIL("the front end was loaded");
    } catch (const Error& error) {
      ::unsetenv("MOCK_OFFER_SELF");
      CHECK(std::string(error.what()).find("dojang-pkcs11.so") != std::string::npos);
    }
    // Without the private interface the same library is an ordinary (empty) module.
    VendorModule plainModule(mock);
    CHECK(plainModule.viaInterface());
    CHECK_FALSE(plainModule.serialised());
    CHECK(plainModule.info().manufacturer == "dojang tests");
  }

  SECTION("a path that is not a module") {
    CHECK(rvOf([] { VendorModule missing("/nonexistent/libnothing.so"); }) == CKR_GENERAL_ERROR);
    CHECK(rvOf([] { VendorModule notPkcs11("/usr/lib/x86_64-linux-gnu/libz.so.1"); }) == CKR_GENERAL_ERROR);
  }
}
