#include "drivers/piv/piv_applet.h"

#include <openssl/crypto.h>
#include <zlib.h>

#include <algorithm>
#include <cstring>

#include "drivers/piv/ber_tlv.h"
#include "drivers/piv/piv_apdu.h"
#include "src/common/cryptoki/hex_text.h"
#include "src/common/errors/foreign_errors.h"

namespace dojang::piv {

namespace {

constexpr std::uint32_t kChuidTag = 0x5FC102;
constexpr std::uint8_t kCertInfoCompressed = 0x01;
constexpr std::size_t kMaxCertificate = 16 * 1024;  // larger than any card object

// zlib's inflate with gzip detection (windowBits 15 + 32), bounded.
Bytes gunzip(std::span<const std::uint8_t> compressed) {
  z_stream stream{};
  if (inflateInit2(&stream, 15 + 32) != Z_OK) {
    fail(CKR_HOST_MEMORY, "inflateInit2 failed");
  }
  Bytes out(kMaxCertificate);
  stream.next_in = const_cast<Bytef*>(compressed.data());  // zlib does not write through it
  stream.avail_in = static_cast<uInt>(compressed.size());
  stream.next_out = out.data();
  stream.avail_out = static_cast<uInt>(out.size());
  const int rv = inflate(&stream, Z_FINISH);
  const std::size_t produced = out.size() - stream.avail_out;
  inflateEnd(&stream);
  if (rv != Z_STREAM_END) {
    fail(CKR_DEVICE_ERROR, "the card's compressed certificate does not inflate");
  }
  out.resize(produced);
  return out;
}

std::span<const std::uint8_t> dynamicResponse(const pcsc::ResponseApdu& response, std::uint8_t tag,
                                              std::string_view command) {
  const auto outer = findTlv(response.data, 0x7C);
  const auto inner = outer ? findTlv(*outer, tag) : std::nullopt;
  if (!inner) {
    fail(CKR_DEVICE_ERROR, std::string(command) + ": the card's answer lacks its 7C template");
  }
  return *inner;
}

}  // namespace

pcsc::ResponseApdu PivApplet::send(const pcsc::CommandApdu& command) {
  auto response = pcsc::exchange(m_channel, command);
  // "Instruction not supported" from a card whose PIV application answered before: another
  // program on the shared card (gpg on a YubiKey) selected its own application. Select PIV again
  // and ask once more; a PIN verified before is gone then, and the card says so (6982).
  if ((response.status == 0x6D00 || response.status == 0x6E00) && m_selectedOnce && !m_reselected) {
    m_reselected = true;
    select();
    response = pcsc::exchange(m_channel, command);
    if (response.status == 0x6982) {
      throw Error(CKR_USER_NOT_LOGGED_IN, ErrorKind::LoginLost,
                  "another program selected another application on the card; its PIN verification is gone");
    }
  }
  return response;
}

void PivApplet::select() {
  const auto response = pcsc::exchange(m_channel, apdu::select());
  if (response.status == 0x6A82 || response.status == 0x6A86 || response.status == 0x6D00 ||
      response.status == 0x6E00) {
    fail(CKR_TOKEN_NOT_RECOGNIZED,
         "the card has no PIV application (SELECT answered " + pcsc::statusText(response.status) + ")");
  }
  checkCardStatus(response.status, "SELECT PIV");
}

std::optional<Bytes> PivApplet::readObject(std::uint32_t tag) {
  const auto response = send(apdu::getData(tag));
  if (response.status == 0x6A82) {
    return std::nullopt;
  }
  checkCardStatus(response.status, "GET DATA");
  const auto value = findTlv(response.data, 0x53);
  if (!value) {
    fail(CKR_DEVICE_ERROR, "GET DATA: the card's answer lacks its 53 wrapper");
  }
  return Bytes(value->begin(), value->end());
}

void PivApplet::writeObject(std::uint32_t tag, std::span<const std::uint8_t> value) {
  checkCardStatus(send(apdu::putData(tag, value)).status, "PUT DATA");
}

std::optional<Bytes> PivApplet::readCertificate(const KeySlot& slot) {
  const auto object = readObject(slot.certificateTag);
  if (!object || object->empty()) {
    return std::nullopt;
  }
  const auto certificate = findTlv(*object, 0x70);
  if (!certificate || certificate->empty()) {
    return std::nullopt;
  }
  const auto info = findTlv(*object, 0x71);
  if (info && !info->empty() && ((*info)[0] & kCertInfoCompressed) != 0) {
    return gunzip(*certificate);
  }
  return Bytes(certificate->begin(), certificate->end());
}

void PivApplet::writeCertificate(const KeySlot& slot, std::span<const std::uint8_t> der) {
  Bytes value;
  if (!der.empty()) {
    appendTlv(value, 0x70, der);
    const std::uint8_t uncompressed[] = {0x00};
    appendTlv(value, 0x71, uncompressed);
    appendTlv(value, 0xFE, {});  // error detection code, empty (Part 1, Table 10)
  }
  checkCardStatus(send(apdu::putData(slot.certificateTag, value)).status, "PUT DATA certificate");
}

std::optional<std::string> PivApplet::chuidSerial() {
  const auto chuid = readObject(kChuidTag);
  if (!chuid) {
    return std::nullopt;
  }
  const auto guid = findTlv(*chuid, 0x34);
  if (guid && std::any_of(guid->begin(), guid->end(), [](std::uint8_t b) { return b != 0; })) {
    return hexText(*guid);
  }
  const auto fascn = findTlv(*chuid, 0x30);
  if (fascn) {
    return hexText(*fascn);
  }
  return std::nullopt;
}

std::optional<FirmwareVersion> PivApplet::yubikeyVersion() {
  const auto response = send(apdu::getVersion());
  if (!response.ok() || response.data.size() < 3) {
    return std::nullopt;
  }
  return FirmwareVersion{response.data[0], response.data[1], response.data[2]};
}

std::optional<std::uint32_t> PivApplet::yubikeySerial() {
  const auto response = send(apdu::getSerial());
  if (!response.ok() || response.data.size() != 4) {
    return std::nullopt;
  }
  return (std::uint32_t{response.data[0]} << 24) | (std::uint32_t{response.data[1]} << 16) |
         (std::uint32_t{response.data[2]} << 8) | response.data[3];
}

PinStatus PivApplet::pinStatus() {
  const auto response = send(apdu::verifyStatus());
  if (response.ok()) {
    return {true, std::nullopt};
  }
  if ((response.status & 0xFFF0) == 0x63C0) {
    return {false, response.status & 0x0Fu};
  }
  if (response.status == 0x6983) {
    return {false, 0u};
  }
  checkCardStatus(response.status, "VERIFY (status)");
  return {};
}

void PivApplet::verifyPin(const SecureBytes& pin) {
  checkCardStatus(send(apdu::verify(pin)).status, "VERIFY PIN");
}

void PivApplet::resetPinStatus() {
  pcsc::CommandApdu command = apdu::verifyStatus();
  command.p1 = 0xFF;
  (void)send(command);  // older cards answer 6A86; they keep the PIN verified until reset
}

void PivApplet::changeReference(std::uint8_t reference, const SecureBytes& oldValue,
                                const SecureBytes& newValue) {
  checkCardStatus(send(apdu::changeReferenceData(reference, oldValue, newValue)).status,
                  "CHANGE REFERENCE DATA");
}

void PivApplet::checkPuk(const SecureBytes& puk) {
  changeReference(apdu::kPukReference, puk, puk);
}

void PivApplet::resetRetryCounter(const SecureBytes& puk, const SecureBytes& newPin) {
  checkCardStatus(send(apdu::resetRetryCounter(puk, newPin)).status, "RESET RETRY COUNTER");
}

void PivApplet::authenticateManagementKey(const ManagementKey& key) {
  const std::size_t block = blockSize(key.algorithm);
  // Step 1: ask for a witness, the card's random block encrypted under the key.
  const std::uint8_t requestWitness[] = {0x7C, 0x02, 0x80, 0x00};
  const auto first =
      send(apdu::generalAuthenticate(key.algorithm, apdu::kManagementKeyReference, requestWitness));
  if (first.status == 0x6A80 || first.status == 0x6A86) {
    fail(CKR_FUNCTION_REJECTED,
         "the card's management key is not a " +
             std::string(key.algorithm == apdu::Algorithm::TripleDes ? "3DES" : "AES") +
             " key of this size (GENERAL AUTHENTICATE answered " + pcsc::statusText(first.status) + ")");
  }
  checkCardStatus(first.status, "GENERAL AUTHENTICATE (witness)");
  const auto witness = dynamicResponse(first, 0x80, "GENERAL AUTHENTICATE (witness)");
  if (witness.size() != block) {
    fail(CKR_DEVICE_ERROR, "the card's witness is not one cipher block");
  }
  // Step 2: return the decrypted witness and our own challenge; the card answers with the
  // challenge encrypted, which proves it holds the same key.
  Bytes decrypted = decryptBlock(key, witness);
  Bytes challenge(block);
  opensslRandomBytes(challenge, "management key challenge");
  Bytes inner;
  appendTlv(inner, 0x80, decrypted);
  appendTlv(inner, 0x81, challenge);
  explicit_bzero(decrypted.data(), decrypted.size());
  const Bytes request = encodeTlv(0x7C, inner);
  explicit_bzero(inner.data(), inner.size());
  const auto second = send(apdu::generalAuthenticate(key.algorithm, apdu::kManagementKeyReference, request));
  if (second.status == 0x6982 || second.status == 0x6A80) {
    fail(CKR_FUNCTION_REJECTED, "the card refused the management key (GENERAL AUTHENTICATE answered " +
                                    pcsc::statusText(second.status) + ")");
  }
  checkCardStatus(second.status, "GENERAL AUTHENTICATE (challenge)");
  const auto answer = dynamicResponse(second, 0x82, "GENERAL AUTHENTICATE (challenge)");
  const Bytes expected = encryptBlock(key, challenge);
  if (answer.size() != expected.size() ||
      CRYPTO_memcmp(answer.data(), expected.data(), expected.size()) != 0) {
    fail(CKR_FUNCTION_REJECTED, "the card did not prove it holds the management key");
  }
}

PublicKeyFacts PivApplet::generateKeyPair(const KeySlot& slot, apdu::Algorithm algorithm) {
  const auto response = send(apdu::generateAsymmetricKeyPair(slot.keyReference, algorithm));
  checkCardStatus(response.status, "GENERATE ASYMMETRIC KEY PAIR");
  const auto publicKey = findTlv(response.data, 0x7F49);
  if (!publicKey) {
    fail(CKR_DEVICE_ERROR, "GENERATE ASYMMETRIC KEY PAIR: the card's answer lacks 7F49");
  }
  return publicKeyFromGenerated(algorithm, *publicKey);
}

Bytes PivApplet::privateKeyOperation(const KeySlot& slot, apdu::Algorithm algorithm,
                                     std::span<const std::uint8_t> input) {
  Bytes inner;
  appendTlv(inner, 0x82, {});  // the response goes here
  appendTlv(inner, 0x81, input);
  const auto response = send(apdu::generalAuthenticate(algorithm, slot.keyReference, encodeTlv(0x7C, inner)));
  checkCardStatus(response.status,
                  "GENERAL AUTHENTICATE (key " + hexText(std::span(&slot.keyReference, 1)) + ")");
  const auto result = dynamicResponse(response, 0x82, "GENERAL AUTHENTICATE");
  return Bytes(result.begin(), result.end());
}

}  // namespace dojang::piv
