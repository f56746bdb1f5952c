// The virtual PIV card's commands that yubico-piv-tool 2.2 and OpenSC cannot reach, sent as raw
// APDUs through the real pcscd: AES management keys (mutual and external authentication), P-384
// keys, ECDH, the raw RSA operation, PIN policies, extended APDUs, chaining and GET RESPONSE.
// Every cryptographic answer is checked with OpenSSL, not with the card's own code.
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <winscard.h>

#include <catch2/catch.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tests/support/pcscd_process.h"
#include "tests/support/temp_dir.h"

namespace {

using Bytes = std::vector<std::uint8_t>;

constexpr const char* kAesKey = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

struct Answer {
  Bytes data;
  std::uint16_t sw = 0;
};

// One PC/SC context and card handle, released by the destructor.
class Card final {
 public:
  explicit Card(const std::string& reader) {
    REQUIRE(SCardEstablishContext(SCARD_SCOPE_SYSTEM, nullptr, nullptr, &m_context) == SCARD_S_SUCCESS);
    DWORD protocol = 0;
    REQUIRE(SCardConnect(m_context, reader.c_str(), SCARD_SHARE_SHARED, SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1,
                         &m_card, &protocol) == SCARD_S_SUCCESS);
    m_pci = protocol == SCARD_PROTOCOL_T1 ? SCARD_PCI_T1 : SCARD_PCI_T0;
  }
  ~Card() {
    SCardDisconnect(m_card, SCARD_RESET_CARD);
    SCardReleaseContext(m_context);
  }
  Card(const Card&) = delete;
  Card& operator=(const Card&) = delete;

  Answer raw(const Bytes& apdu) {
    Bytes buffer(65538);
    DWORD length = static_cast<DWORD>(buffer.size());
    REQUIRE(SCardTransmit(m_card, m_pci, apdu.data(), static_cast<DWORD>(apdu.size()), nullptr, buffer.data(),
                          &length) == SCARD_S_SUCCESS);
    REQUIRE(length >= 2);
    buffer.resize(length);
    const auto sw = static_cast<std::uint16_t>((buffer[length - 2] << 8) | buffer[length - 1]);
    buffer.resize(length - 2);
    return Answer{buffer, sw};
  }

  // A short APDU; data over 255 bytes goes in a chain (CLA 10), 61xx answers are collected.
  Answer send(std::uint8_t ins, std::uint8_t p1, std::uint8_t p2, const Bytes& data) {
    std::size_t at = 0;
    Answer answer;
    do {
      const std::size_t part = std::min<std::size_t>(255, data.size() - at);
      const bool last = at + part == data.size();
      Bytes apdu = {static_cast<std::uint8_t>(last ? 0x00 : 0x10), ins, p1, p2};
      if (part > 0) {
        apdu.push_back(static_cast<std::uint8_t>(part));
        apdu.insert(apdu.end(), data.begin() + static_cast<std::ptrdiff_t>(at),
                    data.begin() + static_cast<std::ptrdiff_t>(at + part));
      }
      apdu.push_back(0x00);
      answer = raw(apdu);
      at += part;
    } while (at < data.size() && answer.sw == 0x9000);
    Bytes collected = answer.data;
    while ((answer.sw >> 8) == 0x61) {
      answer = raw({0x00, 0xC0, 0x00, 0x00, static_cast<std::uint8_t>(answer.sw & 0xFF)});
      collected.insert(collected.end(), answer.data.begin(), answer.data.end());
    }
    answer.data = collected;
    return answer;
  }

  // An extended APDU (case 4E): the whole answer at once.
  Answer sendExtended(std::uint8_t ins, std::uint8_t p1, std::uint8_t p2, const Bytes& data) {
    Bytes apdu = {0x00, ins, p1, p2, 0x00, static_cast<std::uint8_t>(data.size() >> 8),
                  static_cast<std::uint8_t>(data.size())};
    apdu.insert(apdu.end(), data.begin(), data.end());
    apdu.insert(apdu.end(), {0x00, 0x00});
    return raw(apdu);
  }

 private:
  SCARDCONTEXT m_context = 0;
  SCARDHANDLE m_card = 0;
  const SCARD_IO_REQUEST* m_pci = nullptr;
};

Bytes tlv(std::uint32_t tag, const Bytes& value) {
  Bytes out;
  if (tag > 0xFF) {
    out.push_back(static_cast<std::uint8_t>(tag >> 8));
  }
  out.push_back(static_cast<std::uint8_t>(tag));
  if (value.size() > 0xFF) {
    out.insert(out.end(), {0x82, static_cast<std::uint8_t>(value.size() >> 8), static_cast<std::uint8_t>(value.size())});
  } else if (value.size() >= 0x80) {
    out.insert(out.end(), {0x81, static_cast<std::uint8_t>(value.size())});
  } else {
    out.push_back(static_cast<std::uint8_t>(value.size()));
  }
  out.insert(out.end(), value.begin(), value.end());
  return out;
}

Bytes concat(Bytes a, const Bytes& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// The value of the first `tag` (one or two bytes) at the top of `bytes`, searched shallowly.
Bytes valueOf(const Bytes& bytes, std::uint32_t tag) {
  std::size_t at = 0;
  while (at < bytes.size()) {
    std::uint32_t current = bytes[at++];
    if ((current & 0x1F) == 0x1F) {
      current = (current << 8) | bytes[at++];
    }
    std::size_t length = bytes[at++];
    if (length > 0x80) {
      const std::size_t count = length & 0x7F;
      length = 0;
      for (std::size_t i = 0; i < count; ++i) {
        length = (length << 8) | bytes[at++];
      }
    }
    if (current == tag) {
      return Bytes(bytes.begin() + static_cast<std::ptrdiff_t>(at),
                   bytes.begin() + static_cast<std::ptrdiff_t>(at + length));
    }
    at += length;
  }
  return {};
}

Bytes randomBytes(std::size_t count) {
  Bytes bytes(count);
  REQUIRE(RAND_bytes(bytes.data(), static_cast<int>(count)) == 1);
  return bytes;
}

Bytes aes256Block(const Bytes& key, const Bytes& block, bool encrypt) {
  std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)> context(EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_free);
  Bytes out(32);
  int length = 0;
  REQUIRE(EVP_CipherInit_ex(context.get(), EVP_aes_256_ecb(), nullptr, key.data(), nullptr, encrypt ? 1 : 0) == 1);
  EVP_CIPHER_CTX_set_padding(context.get(), 0);
  REQUIRE(EVP_CipherUpdate(context.get(), out.data(), &length, block.data(), static_cast<int>(block.size())) == 1);
  out.resize(static_cast<std::size_t>(length));
  return out;
}

using Pkey = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;

Pkey ecPublicKey(const char* group, const Bytes& point) {
  std::unique_ptr<OSSL_PARAM_BLD, decltype(&OSSL_PARAM_BLD_free)> builder(OSSL_PARAM_BLD_new(), OSSL_PARAM_BLD_free);
  OSSL_PARAM_BLD_push_utf8_string(builder.get(), OSSL_PKEY_PARAM_GROUP_NAME, group, 0);
  OSSL_PARAM_BLD_push_octet_string(builder.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size());
  std::unique_ptr<OSSL_PARAM, decltype(&OSSL_PARAM_free)> params(OSSL_PARAM_BLD_to_param(builder.get()),
                                                                 OSSL_PARAM_free);
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> context(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr),
                                                                      EVP_PKEY_CTX_free);
  EVP_PKEY* key = nullptr;
  REQUIRE(EVP_PKEY_fromdata_init(context.get()) == 1);
  REQUIRE(EVP_PKEY_fromdata(context.get(), &key, EVP_PKEY_PUBLIC_KEY, params.get()) == 1);
  return Pkey(key, EVP_PKEY_free);
}

Pkey rsaPublicKey(const Bytes& modulus, const Bytes& exponent) {
  std::unique_ptr<BIGNUM, decltype(&BN_free)> n(BN_bin2bn(modulus.data(), static_cast<int>(modulus.size()), nullptr),
                                                BN_free);
  std::unique_ptr<BIGNUM, decltype(&BN_free)> e(BN_bin2bn(exponent.data(), static_cast<int>(exponent.size()), nullptr),
                                                BN_free);
  std::unique_ptr<OSSL_PARAM_BLD, decltype(&OSSL_PARAM_BLD_free)> builder(OSSL_PARAM_BLD_new(), OSSL_PARAM_BLD_free);
  OSSL_PARAM_BLD_push_BN(builder.get(), OSSL_PKEY_PARAM_RSA_N, n.get());
  OSSL_PARAM_BLD_push_BN(builder.get(), OSSL_PKEY_PARAM_RSA_E, e.get());
  std::unique_ptr<OSSL_PARAM, decltype(&OSSL_PARAM_free)> params(OSSL_PARAM_BLD_to_param(builder.get()),
                                                                 OSSL_PARAM_free);
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> context(
      EVP_PKEY_CTX_new_from_name(nullptr, "RSA", nullptr), EVP_PKEY_CTX_free);
  EVP_PKEY* key = nullptr;
  REQUIRE(EVP_PKEY_fromdata_init(context.get()) == 1);
  REQUIRE(EVP_PKEY_fromdata(context.get(), &key, EVP_PKEY_PUBLIC_KEY, params.get()) == 1);
  return Pkey(key, EVP_PKEY_free);
}

bool ecdsaVerifies(EVP_PKEY* key, const Bytes& digest, const Bytes& signature) {
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> context(EVP_PKEY_CTX_new(key, nullptr), EVP_PKEY_CTX_free);
  return EVP_PKEY_verify_init(context.get()) == 1 &&
         EVP_PKEY_verify(context.get(), signature.data(), signature.size(), digest.data(), digest.size()) == 1;
}

const Bytes kPin = {'1', '2', '3', '4', '5', '6', 0xFF, 0xFF};

// GENERAL AUTHENTICATE data: 7C { 82 00, TAG input }.
Bytes keyRequest(std::uint32_t tag, const Bytes& input) { return tlv(0x7C, concat(tlv(0x82, {}), tlv(tag, input))); }

void authenticateMutually(Card& card, const Bytes& key) {
  const Answer witness = card.send(0x87, 0x0C, 0x9B, tlv(0x7C, tlv(0x80, {})));
  REQUIRE(witness.sw == 0x9000);
  const Bytes decrypted = aes256Block(key, valueOf(valueOf(witness.data, 0x7C), 0x80), false);
  const Bytes challenge = randomBytes(16);
  const Answer answer = card.send(0x87, 0x0C, 0x9B, tlv(0x7C, concat(tlv(0x80, decrypted), tlv(0x81, challenge))));
  REQUIRE(answer.sw == 0x9000);
  REQUIRE(valueOf(valueOf(answer.data, 0x7C), 0x82) == aes256Block(key, challenge, true));
}

}  // namespace

TEST_CASE("raw PIV commands: AES-256 management key, P-384, ECDH, raw RSA, PIN policies", "[virtual_piv]") {
  dojang::test::PcscdLock lock;
  dojang::test::TempDir dir("dojang-vpiv-raw-");
  dojang::test::PcscdProcess pcscd(dir.path(), "dojang vpiv raw");
  dojang::test::VirtualPivCard virtualCard(dir.path());
  virtualCard.start(pcscd.port(), dir / "card.state",
                    {"--management-key-algorithm", "aes256", "--management-key", kAesKey});
  REQUIRE(virtualCard.waitUntilPresent(pcscd.readerName()));
  Bytes key;
  for (std::size_t i = 0; i < 32; ++i) {
    key.push_back(static_cast<std::uint8_t>(i));
  }

  Card card(pcscd.readerName());
  const Answer selected = card.send(0xA4, 0x04, 0x00, {0xA0, 0x00, 0x00, 0x03, 0x08});
  REQUIRE(selected.sw == 0x9000);
  CHECK(valueOf(valueOf(selected.data, 0x61), 0x4F) == Bytes{0x00, 0x00, 0x10, 0x00, 0x01, 0x00});
  CHECK(card.send(0xCB, 0x3F, 0xFF, tlv(0x5C, {0x5F, 0xC1, 0x05})).sw == 0x6A82);
  CHECK(card.send(0xCB, 0x3F, 0xFF, tlv(0x5C, {0x7E})).sw == 0x9000);

  // Without the management key, nothing is generated or written; 3DES is not this card's key.
  CHECK(card.send(0x47, 0x00, 0x9D, tlv(0xAC, tlv(0x80, {0x14}))).sw == 0x6982);
  CHECK(card.send(0xDB, 0x3F, 0xFF, concat(tlv(0x5C, {0x5F, 0xC1, 0x05}), tlv(0x53, {0x70, 0x00}))).sw == 0x6982);
  CHECK(card.send(0x87, 0x03, 0x9B, tlv(0x7C, tlv(0x80, {}))).sw == 0x6A86);

  SECTION("external authentication with a wrong answer is refused, the right one accepted") {
    const Answer challenge = card.send(0x87, 0x0C, 0x9B, tlv(0x7C, tlv(0x81, {})));
    REQUIRE(challenge.sw == 0x9000);
    const Bytes plain = valueOf(valueOf(challenge.data, 0x7C), 0x81);
    Bytes wrong = aes256Block(key, plain, true);
    wrong[0] ^= 1;
    CHECK(card.send(0x87, 0x0C, 0x9B, tlv(0x7C, tlv(0x82, wrong))).sw == 0x6982);
    const Answer again = card.send(0x87, 0x0C, 0x9B, tlv(0x7C, tlv(0x81, {})));
    const Bytes response = aes256Block(key, valueOf(valueOf(again.data, 0x7C), 0x81), true);
    CHECK(card.send(0x87, 0x0C, 0x9B, tlv(0x7C, tlv(0x82, response))).sw == 0x9000);
    CHECK(card.send(0x47, 0x00, 0x9E, tlv(0xAC, tlv(0x80, {0x11}))).sw == 0x9000);
  }

  SECTION("P-384 in 9D: ECDSA and ECDH checked with OpenSSL") {
    authenticateMutually(card, key);
    const Answer generated = card.send(0x47, 0x00, 0x9D, tlv(0xAC, tlv(0x80, {0x14})));
    REQUIRE(generated.sw == 0x9000);
    const Bytes point = valueOf(valueOf(generated.data, 0x7F49), 0x86);
    REQUIRE(point.size() == 97);
    const Pkey cardKey = ecPublicKey("P-384", point);

    Bytes digest(SHA384_DIGEST_LENGTH);
    const std::string message = "signed with P-384";
    SHA384(reinterpret_cast<const unsigned char*>(message.data()), message.size(), digest.data());
    CHECK(card.send(0x87, 0x14, 0x9D, keyRequest(0x81, digest)).sw == 0x6982);  // PIN first
    REQUIRE(card.send(0x20, 0x00, 0x80, kPin).sw == 0x9000);
    const Answer signed_ = card.send(0x87, 0x14, 0x9D, keyRequest(0x81, digest));
    REQUIRE(signed_.sw == 0x9000);
    CHECK(ecdsaVerifies(cardKey.get(), digest, valueOf(valueOf(signed_.data, 0x7C), 0x82)));
    CHECK(card.send(0x87, 0x11, 0x9D, keyRequest(0x81, digest)).sw == 0x6A86);  // not its algorithm

    Pkey peer(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-384"), EVP_PKEY_free);
    Bytes peerPoint(97);
    std::size_t peerLength = 0;
    EVP_PKEY_get_octet_string_param(peer.get(), OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, peerPoint.data(),
                                    peerPoint.size(), &peerLength);
    const Answer shared = card.send(0x87, 0x14, 0x9D, keyRequest(0x85, peerPoint));
    REQUIRE(shared.sw == 0x9000);
    std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> derive(EVP_PKEY_CTX_new(peer.get(), nullptr),
                                                                       EVP_PKEY_CTX_free);
    Bytes expected(48);
    std::size_t expectedLength = expected.size();
    REQUIRE(EVP_PKEY_derive_init(derive.get()) == 1);
    REQUIRE(EVP_PKEY_derive_set_peer(derive.get(), cardKey.get()) == 1);
    REQUIRE(EVP_PKEY_derive(derive.get(), expected.data(), &expectedLength) == 1);
    CHECK(valueOf(valueOf(shared.data, 0x7C), 0x82) == expected);
  }

  SECTION("RSA-2048 in 9C: the raw operation by chaining and by extended APDU, PIN before each") {
    authenticateMutually(card, key);
    const Answer generated = card.send(0x47, 0x00, 0x9C, tlv(0xAC, tlv(0x80, {0x07})));
    REQUIRE(generated.sw == 0x9000);
    const Bytes publicTemplate = valueOf(generated.data, 0x7F49);
    const Pkey cardKey = rsaPublicKey(valueOf(publicTemplate, 0x81), valueOf(publicTemplate, 0x82));

    // m^e mod n by OpenSSL; the card's private operation must give m back.
    Bytes message = randomBytes(256);
    message[0] = 0x00;
    std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> encrypt(EVP_PKEY_CTX_new(cardKey.get(), nullptr),
                                                                        EVP_PKEY_CTX_free);
    Bytes cipher(256);
    std::size_t cipherLength = cipher.size();
    REQUIRE(EVP_PKEY_encrypt_init(encrypt.get()) == 1);
    REQUIRE(EVP_PKEY_CTX_set_rsa_padding(encrypt.get(), RSA_NO_PADDING) == 1);
    REQUIRE(EVP_PKEY_encrypt(encrypt.get(), cipher.data(), &cipherLength, message.data(), message.size()) == 1);

    REQUIRE(card.send(0x20, 0x00, 0x80, kPin).sw == 0x9000);
    const Answer chained = card.send(0x87, 0x07, 0x9C, keyRequest(0x81, cipher));
    REQUIRE(chained.sw == 0x9000);
    CHECK(valueOf(valueOf(chained.data, 0x7C), 0x82) == message);
    // PIN always: the verification was used up.
    CHECK(card.send(0x87, 0x07, 0x9C, keyRequest(0x81, cipher)).sw == 0x6982);
    REQUIRE(card.send(0x20, 0x00, 0x80, kPin).sw == 0x9000);
    const Answer extended = card.sendExtended(0x87, 0x07, 0x9C, keyRequest(0x81, cipher));
    REQUIRE(extended.sw == 0x9000);
    CHECK(valueOf(valueOf(extended.data, 0x7C), 0x82) == message);
  }

  SECTION("VERIFY: status without data, P1 FF ends it, a reset forgets it") {
    CHECK(card.send(0x20, 0x00, 0x80, {}).sw == 0x63C3);
    REQUIRE(card.send(0x20, 0x00, 0x80, kPin).sw == 0x9000);
    CHECK(card.send(0x20, 0x00, 0x80, {}).sw == 0x9000);
    CHECK(card.send(0x20, 0xFF, 0x80, {}).sw == 0x9000);
    CHECK(card.send(0x20, 0x00, 0x80, {}).sw == 0x63C3);
  }
}
