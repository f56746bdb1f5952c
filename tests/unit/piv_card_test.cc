// The PIV card logic (drivers/piv) and the APDU exchange rules (drivers/pcsc/apdu) against a
// scripted card: no pcscd, no emulator. Cryptograms and signatures the "card" returns are made
// here with OpenSSL, independently of the driver's own code.
#include <catch2/catch.hpp>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <zlib.h>

#include "drivers/pcsc/apdu.h"
#include "drivers/piv/ber_tlv.h"
#include "drivers/piv/host_crypto.h"
#include "drivers/piv/key_slots.h"
#include "drivers/piv/management_key.h"
#include "drivers/piv/piv_applet.h"
#include "src/common/errors/error.h"
#include "src/common/ossl/owners.h"
#include "tests/unit/scripted_card.h"

namespace piv = dojang::piv;
using dojang::test::Bytes;
using dojang::test::concat;
using dojang::test::fromHex;
using dojang::test::ScriptedCard;

namespace {

const Bytes kOk = {0x90, 0x00};

Bytes ecb(const EVP_CIPHER* cipher, const Bytes& key, const Bytes& block, bool encrypt) {
  EVP_CIPHER_CTX* context = EVP_CIPHER_CTX_new();
  REQUIRE(EVP_CipherInit_ex(context, cipher, nullptr, key.data(), nullptr, encrypt ? 1 : 0) == 1);
  EVP_CIPHER_CTX_set_padding(context, 0);
  Bytes out(block.size() + 16);
  int length = 0;
  int final = 0;
  REQUIRE(EVP_CipherUpdate(context, out.data(), &length, block.data(), static_cast<int>(block.size())) == 1);
  REQUIRE(EVP_CipherFinal_ex(context, out.data() + length, &final) == 1);
  EVP_CIPHER_CTX_free(context);
  out.resize(static_cast<std::size_t>(length + final));
  return out;
}

Bytes spkiOf(EVP_PKEY* key) {
  unsigned char* der = nullptr;
  const int length = i2d_PUBKEY(key, &der);
  Bytes out(der, der + length);
  OPENSSL_free(der);
  return out;
}

// A self-signed certificate for `key`, DER.
Bytes certificateFor(EVP_PKEY* key) {
  const dojang::X509Ptr cert(X509_new());
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 7);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), 0);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 86400);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("piv test"), -1, -1, 0);
  X509_set_issuer_name(cert.get(), name);
  X509_set_pubkey(cert.get(), key);
  REQUIRE(X509_sign(cert.get(), key, EVP_sha256()) > 0);
  unsigned char* der = nullptr;
  const int length = i2d_X509(cert.get(), &der);
  Bytes out(der, der + length);
  OPENSSL_free(der);
  return out;
}

Bytes gzip(const Bytes& data) {
  z_stream stream{};
  REQUIRE(deflateInit2(&stream, Z_BEST_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  Bytes out(data.size() + 64);
  stream.next_in = const_cast<Bytef*>(data.data());
  stream.avail_in = static_cast<uInt>(data.size());
  stream.next_out = out.data();
  stream.avail_out = static_cast<uInt>(out.size());
  REQUIRE(deflate(&stream, Z_FINISH) == Z_STREAM_END);
  out.resize(out.size() - stream.avail_out);
  deflateEnd(&stream);
  return out;
}

// Answers a long object in 256-byte pieces with 61xx, as cards with short APDUs do.
void answerInPieces(ScriptedCard& card, const Bytes& command, const Bytes& answer) {
  std::size_t at = 0;
  const auto piece = [&](std::size_t from) {
    const std::size_t size = std::min<std::size_t>(256, answer.size() - from);
    Bytes out(answer.begin() + static_cast<std::ptrdiff_t>(from), answer.begin() + static_cast<std::ptrdiff_t>(from + size));
    const std::size_t left = answer.size() - from - size;
    if (left == 0) {
      return concat(out, kOk);
    }
    return concat(out, {0x61, static_cast<std::uint8_t>(left >= 256 ? 0 : left)});
  };
  card.expect(command, piece(0));
  at = 256;
  while (at < answer.size()) {
    const std::size_t left = answer.size() - at;
    card.expect(Bytes{0x00, 0xC0, 0x00, 0x00, static_cast<std::uint8_t>(left >= 256 ? 0 : left)}, piece(at));
    at += 256;
  }
}

// The card's half of mutual authentication (SP 800-73-4 Part 2, Appendix A) with `key`.
void scriptMutualAuthentication(ScriptedCard& card, std::uint8_t algorithm, const EVP_CIPHER* cipher, const Bytes& key,
                                std::size_t block) {
  auto witness = std::make_shared<Bytes>(block, 0x5A);
  (*witness)[0] = 0x01;
  card.respond([=](std::span<const std::uint8_t> command) {
    CHECK(dojang::hexText(command) ==
          dojang::hexText(Bytes{0x00, 0x87, algorithm, 0x9B, 0x04, 0x7C, 0x02, 0x80, 0x00, 0x00}));
    Bytes inner = piv::encodeTlv(0x80, ecb(cipher, key, *witness, true));
    return concat(piv::encodeTlv(0x7C, inner), kOk);
  });
  card.respond([=](std::span<const std::uint8_t> command) {
    const std::span<const std::uint8_t> data = command.subspan(5, command[4]);
    const auto outer = piv::findTlv(data, 0x7C);
    REQUIRE(outer);
    const auto decrypted = piv::findTlv(*outer, 0x80);
    const auto challenge = piv::findTlv(*outer, 0x81);
    REQUIRE(decrypted);
    REQUIRE(challenge);
    if (Bytes(decrypted->begin(), decrypted->end()) != *witness) {
      return Bytes{0x69, 0x82};
    }
    const Bytes answer = ecb(cipher, key, Bytes(challenge->begin(), challenge->end()), true);
    return concat(piv::encodeTlv(0x7C, piv::encodeTlv(0x82, answer)), kOk);
  });
}

// The 81 operand of a GENERAL AUTHENTICATE command (possibly chained: the parts are joined).
Bytes operandOf(const std::vector<Bytes>& parts) {
  Bytes data;
  for (const auto& part : parts) {
    data.insert(data.end(), part.begin() + 5, part.begin() + 5 + part[4]);
  }
  const auto outer = piv::findTlv(data, 0x7C);
  REQUIRE(outer);
  const auto operand = piv::findTlv(*outer, 0x81);
  REQUIRE(operand);
  return Bytes(operand->begin(), operand->end());
}

// A "card" that performs the raw private-key operation of GENERAL AUTHENTICATE with `key`;
// `chainedParts` is how many APDUs the command arrives in.
void scriptPrivateOperation(ScriptedCard& card, EVP_PKEY* key, int chainedParts, bool rsa) {
  auto parts = std::make_shared<std::vector<Bytes>>();
  for (int i = 0; i + 1 < chainedParts; ++i) {
    card.respond([=](std::span<const std::uint8_t> command) {
      CHECK(command[0] == 0x10);  // chained
      parts->emplace_back(command.begin(), command.end());
      return kOk;
    });
  }
  card.respond([=, &card](std::span<const std::uint8_t> command) {
    CHECK(command[0] == 0x00);
    parts->emplace_back(command.begin(), command.end());
    const Bytes operand = operandOf(*parts);
    const dojang::PkeyCtxPtr context(EVP_PKEY_CTX_new(key, nullptr));
    Bytes result(512);
    std::size_t length = result.size();
    if (rsa) {
      REQUIRE(EVP_PKEY_decrypt_init(context.get()) == 1);
      REQUIRE(EVP_PKEY_CTX_set_rsa_padding(context.get(), RSA_NO_PADDING) == 1);
      REQUIRE(EVP_PKEY_decrypt(context.get(), result.data(), &length, operand.data(), operand.size()) == 1);
    } else {
      REQUIRE(EVP_PKEY_sign_init(context.get()) == 1);
      REQUIRE(EVP_PKEY_sign(context.get(), result.data(), &length, operand.data(), operand.size()) == 1);
    }
    result.resize(length);
    const Bytes answer = piv::encodeTlv(0x7C, piv::encodeTlv(0x82, result));
    Bytes out = answer;
    if (out.size() > 256) {  // long answers come with 61xx
      const std::size_t rest = out.size() - 256;
      out.resize(256);
      card.expect(Bytes{0x00, 0xC0, 0x00, 0x00, static_cast<std::uint8_t>(rest)},
                  concat(Bytes(answer.begin() + 256, answer.end()), kOk));
      return concat(out, {0x61, static_cast<std::uint8_t>(rest)});
    }
    return concat(out, kOk);
  });
}

}  // namespace

TEST_CASE("SELECT sends the PIV AID and follows 61xx with GET RESPONSE", "[piv][apdu]") {
  ScriptedCard card;
  card.expect("00 A4 04 00 09 A0 00 00 03 08 00 00 10 00 00", "61 05");
  card.expect("00 C0 00 00 05", "61 11 4F 03 A0 00 90 00");
  piv::PivApplet applet(card);
  applet.select();
  CHECK(card.finished());
}

TEST_CASE("a card without the PIV application is not recognised", "[piv][apdu]") {
  ScriptedCard card;
  card.expect("00 A4 04 00 09 A0 00 00 03 08 00 00 10 00 00", "6A 82");
  piv::PivApplet applet(card);
  try {
    applet.select();
    FAIL("no error");
  } catch (const dojang::Error& error) {
    CHECK(error.rv() == CKR_TOKEN_NOT_RECOGNIZED);
  }
}

TEST_CASE("6Cxx makes the exchange resend the command with the card's Le", "[piv][apdu]") {
  ScriptedCard card;
  card.expect("00 FD 00 00 00", "6C 03");
  card.expect("00 FD 00 00 03", "05 04 03 90 00");
  piv::PivApplet applet(card);
  const auto version = applet.yubikeyVersion();
  REQUIRE(version);
  CHECK(version->major == 5);
  CHECK(version->minor == 4);
  CHECK(version->patch == 3);
}

TEST_CASE("certificates are read from their objects, plain and gzip-compressed", "[piv][certificates]") {
  const dojang::PkeyPtr key(EVP_EC_gen("P-256"));
  const Bytes der = certificateFor(key.get());
  const auto& slot9a = piv::keySlots()[0];
  const auto& slot9c = piv::keySlots()[1];
  REQUIRE(slot9a.keyReference == 0x9A);
  REQUIRE(slot9c.keyReference == 0x9C);

  Bytes plain;
  piv::appendTlv(plain, 0x70, der);
  piv::appendTlv(plain, 0x71, Bytes{0x00});
  piv::appendTlv(plain, 0xFE, {});
  Bytes compressed;
  piv::appendTlv(compressed, 0x70, gzip(der));
  piv::appendTlv(compressed, 0x71, Bytes{0x01});
  piv::appendTlv(compressed, 0xFE, {});

  ScriptedCard card;
  answerInPieces(card, fromHex("00 CB 3F FF 05 5C 03 5F C1 05 00"), piv::encodeTlv(0x53, plain));
  card.expect(fromHex("00 CB 3F FF 05 5C 03 5F C1 0A 00"), concat(piv::encodeTlv(0x53, compressed), kOk));
  card.expect("00 CB 3F FF 05 5C 03 5F C1 0B 00", "6A 82");
  piv::PivApplet applet(card);
  CHECK(applet.readCertificate(slot9a) == der);
  CHECK(applet.readCertificate(slot9c) == der);
  CHECK_FALSE(applet.readCertificate(piv::keySlots()[2]).has_value());
  CHECK(card.finished());
  CHECK(piv::publicKeyFromCertificate(der).keyType == CKK_EC);
}

TEST_CASE("PUT DATA of a long certificate is chained in 255-byte parts", "[piv][certificates]") {
  const dojang::PkeyPtr key(EVP_RSA_gen(2048));
  const Bytes der = certificateFor(key.get());
  REQUIRE(der.size() > 510);
  ScriptedCard card;
  Bytes received;
  for (int i = 0; i < 10; ++i) {  // more answers than parts; the unused ones stay
    card.respond([&received](std::span<const std::uint8_t> command) {
      received.insert(received.end(), command.begin() + 5, command.begin() + 5 + command[4]);
      return Bytes{0x90, 0x00};
    });
  }
  piv::PivApplet applet(card);
  applet.writeCertificate(piv::keySlots()[0], der);
  // Every part but the last carries CLA 10 and 255 bytes; the joined data is the whole command.
  REQUIRE(card.sent.size() >= 3);
  for (std::size_t i = 0; i + 1 < card.sent.size(); ++i) {
    CHECK(card.sent[i][0] == 0x10);
    CHECK(card.sent[i][4] == 0xFF);
  }
  CHECK(card.sent.back()[0] == 0x00);
  CHECK(card.sent.back()[1] == 0xDB);
  const auto object = piv::findTlv(received, 0x53);
  REQUIRE(object);
  const auto certificate = piv::findTlv(*object, 0x70);
  REQUIRE(certificate);
  CHECK(Bytes(certificate->begin(), certificate->end()) == der);
  CHECK(dojang::hexText(Bytes(received.begin(), received.begin() + 5)) == "5c035fc105");
}

TEST_CASE("VERIFY: a wrong PIN says the tries left, a blocked one is locked, no data asks the state", "[piv][pin]") {
  ScriptedCard card;
  card.expect("00 20 00 80 08 31 32 33 34 FF FF FF FF", "63 C2");
  card.expect("00 20 00 80 08 31 32 33 34 FF FF FF FF", "69 83");
  card.expect("00 20 00 80", "63 C1");
  card.expect("00 20 00 80", "90 00");
  card.expect("00 20 00 80 08 31 32 33 34 35 36 FF FF", "90 00");
  piv::PivApplet applet(card);
  const dojang::SecureBytes wrong(std::string_view("1234"));
  try {
    applet.verifyPin(wrong);
    FAIL("no error");
  } catch (const dojang::Error& error) {
    CHECK(error.kind() == dojang::ErrorKind::PinIncorrect);
    CHECK(error.rv() == CKR_PIN_INCORRECT);
    CHECK(error.pinRetriesLeft() == 2u);
  }
  try {
    applet.verifyPin(wrong);
    FAIL("no error");
  } catch (const dojang::Error& error) {
    CHECK(error.kind() == dojang::ErrorKind::PinLocked);
    CHECK(error.rv() == CKR_PIN_LOCKED);
  }
  const auto lowState = applet.pinStatus();
  CHECK_FALSE(lowState.verified);
  CHECK(lowState.retriesLeft == 1u);
  CHECK(applet.pinStatus().verified);
  applet.verifyPin(dojang::SecureBytes(std::string_view("123456")));
  CHECK(card.finished());

  const auto state = dojang::token::PinState::fromCounts(1, 3);
  CHECK(state.countLow);
  CHECK(state.finalTry);
  CHECK_FALSE(state.locked);
}

TEST_CASE("RESET RETRY COUNTER and CHANGE REFERENCE DATA carry both values padded", "[piv][pin]") {
  ScriptedCard card;
  card.expect("00 2C 00 80 10 31 32 33 34 35 36 37 38 36 35 34 33 32 31 FF FF", "90 00");
  card.expect("00 24 00 81 10 31 32 33 34 35 36 37 38 31 32 33 34 35 36 37 38", "63 C2");
  piv::PivApplet applet(card);
  const dojang::SecureBytes puk(std::string_view("12345678"));
  applet.resetRetryCounter(puk, dojang::SecureBytes(std::string_view("654321")));
  CHECK_THROWS_AS(applet.checkPuk(puk), dojang::Error);
  CHECK(card.finished());
}

TEST_CASE("management key mutual authentication with 3DES and AES-128", "[piv][management-key]") {
  SECTION("the default 3DES key") {
    const auto key = piv::defaultManagementKey();
    const Bytes raw = fromHex("010203040506070801020304050607080102030405060708");
    ScriptedCard card;
    scriptMutualAuthentication(card, 0x03, EVP_des_ede3_ecb(), raw, 8);
    piv::PivApplet applet(card);
    applet.authenticateManagementKey(key);
    CHECK(card.finished());
    CHECK(piv::isDefaultKey(key));
  }
  SECTION("an AES-128 key from hex") {
    const std::string hex = "00112233445566778899aabbccddeeff";
    const auto key = piv::parseManagementKey(hex, std::nullopt);
    CHECK(key.algorithm == piv::apdu::Algorithm::Aes128);
    ScriptedCard card;
    scriptMutualAuthentication(card, 0x08, EVP_aes_128_ecb(), fromHex(hex), 16);
    piv::PivApplet applet(card);
    applet.authenticateManagementKey(key);
    CHECK(card.finished());
    // The driver's cipher agrees with OpenSSL's on a known block.
    const Bytes block = fromHex("000102030405060708090a0b0c0d0e0f");
    CHECK(piv::encryptBlock(key, block) == ecb(EVP_aes_128_ecb(), fromHex(hex), block, true));
  }
  SECTION("a wrong key is refused") {
    ScriptedCard card;
    scriptMutualAuthentication(card, 0x03, EVP_des_ede3_ecb(), fromHex("0102030405060708010203040506070801020304050607FF"), 8);
    piv::PivApplet applet(card);
    try {
      applet.authenticateManagementKey(piv::defaultManagementKey());
      FAIL("no error");
    } catch (const dojang::Error& error) {
      CHECK(error.rv() == CKR_FUNCTION_REJECTED);
    }
  }
  CHECK_THROWS_AS(piv::parseManagementKey("0102", std::nullopt), dojang::Error);
}

TEST_CASE("ECDSA: the card's DER signature becomes r || s that verifies", "[piv][sign]") {
  const dojang::PkeyPtr key(EVP_EC_gen("P-256"));
  const auto facts = piv::publicKeyFromSpki(spkiOf(key.get()));
  CHECK(facts.algorithm == piv::apdu::Algorithm::EccP256);
  const Bytes message = {'h', 'e', 'l', 'l', 'o'};
  dojang::token::Mechanism mechanism;
  mechanism.type = CKM_ECDSA_SHA256;
  const Bytes operand = piv::signatureOperand(mechanism, facts, message);
  CHECK(operand.size() == 32);

  ScriptedCard card;
  scriptPrivateOperation(card, key.get(), 1, false);
  piv::PivApplet applet(card);
  const Bytes cardAnswer = applet.privateKeyOperation(piv::keySlots()[1], facts.algorithm, operand);
  CHECK(cardAnswer[0] == 0x30);  // DER from the card
  const Bytes signature = piv::signatureFromCard(facts, cardAnswer);
  CHECK(signature.size() == 64);
  CHECK(dojang::hexText(Bytes(card.sent[0].begin(), card.sent[0].begin() + 4)) == "0087119c");
  piv::verifyOnHost(mechanism, facts, message, signature);
  Bytes broken = signature;
  broken[5] ^= 1;
  CHECK_THROWS_AS(piv::verifyOnHost(mechanism, facts, message, broken), dojang::Error);
}

TEST_CASE("RSA-PSS and PKCS#1: padded on the host, raw on the card, verified by OpenSSL", "[piv][sign]") {
  const dojang::PkeyPtr key(EVP_RSA_gen(2048));
  const auto facts = piv::publicKeyFromSpki(spkiOf(key.get()));
  CHECK(facts.algorithm == piv::apdu::Algorithm::Rsa2048);
  const Bytes message = {'r', 'e', 'n', 'e', 'w'};

  for (const CK_MECHANISM_TYPE type : {CKM_SHA256_RSA_PKCS_PSS, CKM_SHA256_RSA_PKCS}) {
    dojang::token::Mechanism mechanism;
    mechanism.type = type;
    if (type == CKM_SHA256_RSA_PKCS_PSS) {
      mechanism.params.kind = dojang::token::MechanismParameters::Kind::Pss;
      mechanism.params.hashAlg = CKM_SHA256;
      mechanism.params.mgf = CKG_MGF1_SHA256;
      mechanism.params.saltLength = 32;
    }
    const Bytes operand = piv::signatureOperand(mechanism, facts, message);
    REQUIRE(operand.size() == 256);
    if (type == CKM_SHA256_RSA_PKCS) {
      CHECK(dojang::hexText(Bytes(operand.begin(), operand.begin() + 3)) == "0001ff");
    } else {
      CHECK(operand.back() == 0xBC);  // EMSA-PSS trailer
    }
    ScriptedCard card;
    scriptPrivateOperation(card, key.get(), 2, true);  // 7C { 82 00, 81 256 bytes } needs chaining
    piv::PivApplet applet(card);
    const Bytes signature = piv::signatureFromCard(facts, applet.privateKeyOperation(piv::keySlots()[0], facts.algorithm, operand));
    REQUIRE(signature.size() == 256);
    CHECK(card.finished());

    // OpenSSL's own verification with the public key.
    const dojang::MdCtxPtr context(EVP_MD_CTX_new());
    EVP_PKEY_CTX* keyContext = nullptr;
    REQUIRE(EVP_DigestVerifyInit(context.get(), &keyContext, EVP_sha256(), nullptr, key.get()) == 1);
    if (type == CKM_SHA256_RSA_PKCS_PSS) {
      EVP_PKEY_CTX_set_rsa_padding(keyContext, RSA_PKCS1_PSS_PADDING);
      EVP_PKEY_CTX_set_rsa_pss_saltlen(keyContext, 32);
    }
    CHECK(EVP_DigestVerify(context.get(), signature.data(), signature.size(), message.data(), message.size()) == 1);
  }
}

TEST_CASE("RSA decryption: raw on the card, PKCS#1 v1.5 and OAEP removed on the host", "[piv][decrypt]") {
  const dojang::PkeyPtr key(EVP_RSA_gen(2048));
  const auto facts = piv::publicKeyFromSpki(spkiOf(key.get()));
  const Bytes secret = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  for (const int padding : {RSA_PKCS1_PADDING, RSA_PKCS1_OAEP_PADDING}) {
    const dojang::PkeyCtxPtr context(EVP_PKEY_CTX_new(key.get(), nullptr));
    REQUIRE(EVP_PKEY_encrypt_init(context.get()) == 1);
    EVP_PKEY_CTX_set_rsa_padding(context.get(), padding);
    Bytes ciphertext(256);
    std::size_t length = ciphertext.size();
    REQUIRE(EVP_PKEY_encrypt(context.get(), ciphertext.data(), &length, secret.data(), secret.size()) == 1);
    ciphertext.resize(length);

    dojang::token::Mechanism mechanism;
    mechanism.type = padding == RSA_PKCS1_PADDING ? CKM_RSA_PKCS : CKM_RSA_PKCS_OAEP;
    if (padding == RSA_PKCS1_OAEP_PADDING) {
      mechanism.params.kind = dojang::token::MechanismParameters::Kind::Oaep;
      mechanism.params.hashAlg = CKM_SHA_1;
      mechanism.params.mgf = CKG_MGF1_SHA1;
    }
    ScriptedCard card;
    scriptPrivateOperation(card, key.get(), 2, true);
    piv::PivApplet applet(card);
    const Bytes raw = applet.privateKeyOperation(piv::keySlots()[2], facts.algorithm,
                                                 piv::decryptionOperand(mechanism, facts, ciphertext));
    CHECK(piv::plaintextFromCard(mechanism, facts, raw) == secret);
  }
}

TEST_CASE("GENERATE ASYMMETRIC KEY PAIR: the card's 7F49 becomes the public key", "[piv][keygen]") {
  const dojang::PkeyPtr key(EVP_EC_gen("P-256"));
  Bytes point(65);
  std::size_t length = 0;
  REQUIRE(EVP_PKEY_get_octet_string_param(key.get(), "pub", point.data(), point.size(), &length) == 1);
  ScriptedCard card;
  card.expect(fromHex("00 47 00 9A 05 AC 03 80 01 11 00"), concat(piv::encodeTlv(0x7F49, piv::encodeTlv(0x86, point)), kOk));
  piv::PivApplet applet(card);
  const auto facts = applet.generateKeyPair(piv::keySlots()[0], piv::apdu::Algorithm::EccP256);
  CHECK(facts.subjectPublicKeyInfo == spkiOf(key.get()));
  CHECK(facts.ecPoint == piv::encodeTlv(0x04, point));
  CHECK(dojang::hexText(facts.ecParameters) == "06082a8648ce3d030107");
}

TEST_CASE("CKA_ID names PIV slots as OpenSC and ykcs11 do", "[piv][objects]") {
  CHECK(piv::slotForObjectId(Bytes{0x01})->keyReference == 0x9A);
  CHECK(piv::slotForObjectId(Bytes{0x02})->keyReference == 0x9C);
  CHECK(piv::slotForObjectId(Bytes{0x03})->keyReference == 0x9D);
  CHECK(piv::slotForObjectId(Bytes{0x04})->keyReference == 0x9E);
  CHECK(piv::slotForObjectId(Bytes{0x05})->keyReference == 0x82);
  CHECK(piv::slotForObjectId(Bytes{0x18})->keyReference == 0x95);
  CHECK(piv::slotForObjectId(Bytes{0x9D})->objectId == 0x03);
  CHECK(piv::slotForObjectId(Bytes{0x95})->certificateTag == 0x5FC120);
  CHECK(piv::slotForObjectId(Bytes{0x19}) == nullptr);
  CHECK(piv::slotForObjectId(Bytes{0x01, 0x02}) == nullptr);
}
