#include "drivers/piv/piv_apdu.h"

#include <array>
#include <cstring>

#include "drivers/piv/ber_tlv.h"
#include "src/common/errors/error.h"

namespace dojang::piv::apdu {

namespace {

constexpr std::size_t kPinBlock = 8;

Bytes tagListFor(std::uint32_t objectTag) {
  const std::uint8_t tag[] = {static_cast<std::uint8_t>(objectTag >> 16), static_cast<std::uint8_t>(objectTag >> 8),
                              static_cast<std::uint8_t>(objectTag)};
  return encodeTlv(0x5C, tag);
}

CommandApdu make(std::uint8_t ins, std::uint8_t p1, std::uint8_t p2) {
  CommandApdu command;
  command.ins = ins;
  command.p1 = p1;
  command.p2 = p2;
  return command;
}

}  // namespace

SecureBytes paddedPin(const SecureBytes& pin) {
  if (pin.empty() || pin.size() > kPinBlock) {
    fail(CKR_PIN_LEN_RANGE, "a PIV PIN or PUK has 1 to 8 characters");
  }
  std::array<std::uint8_t, kPinBlock> block{};
  block.fill(0xFF);
  std::copy(pin.view().begin(), pin.view().end(), block.begin());
  SecureBytes padded(block);
  explicit_bzero(block.data(), block.size());
  return padded;
}

CommandApdu select() {
  CommandApdu command = make(0xA4, 0x04, 0x00);
  command.data.assign(std::begin(kPivAid), std::end(kPivAid));
  command.expected = 256;
  return command;
}

CommandApdu getData(std::uint32_t objectTag) {
  CommandApdu command = make(0xCB, 0x3F, 0xFF);
  command.data = tagListFor(objectTag);
  command.expected = 256;
  return command;
}

CommandApdu putData(std::uint32_t objectTag, std::span<const std::uint8_t> value) {
  CommandApdu command = make(0xDB, 0x3F, 0xFF);
  command.data = tagListFor(objectTag);
  appendTlv(command.data, 0x53, value);
  return command;
}

CommandApdu verify(const SecureBytes& pin) {
  CommandApdu command = make(0x20, 0x00, kPinReference);
  const SecureBytes padded = paddedPin(pin);
  command.data.assign(padded.view().begin(), padded.view().end());
  return command;
}

CommandApdu verifyStatus() { return make(0x20, 0x00, kPinReference); }

CommandApdu changeReferenceData(std::uint8_t reference, const SecureBytes& oldValue, const SecureBytes& newValue) {
  CommandApdu command = make(0x24, 0x00, reference);
  const SecureBytes oldPadded = paddedPin(oldValue);
  const SecureBytes newPadded = paddedPin(newValue);
  command.data.assign(oldPadded.view().begin(), oldPadded.view().end());
  command.data.insert(command.data.end(), newPadded.view().begin(), newPadded.view().end());
  return command;
}

CommandApdu resetRetryCounter(const SecureBytes& puk, const SecureBytes& newPin) {
  CommandApdu command = make(0x2C, 0x00, kPinReference);
  const SecureBytes pukPadded = paddedPin(puk);
  const SecureBytes pinPadded = paddedPin(newPin);
  command.data.assign(pukPadded.view().begin(), pukPadded.view().end());
  command.data.insert(command.data.end(), pinPadded.view().begin(), pinPadded.view().end());
  return command;
}

CommandApdu generalAuthenticate(Algorithm algorithm, std::uint8_t keyReference,
                                std::span<const std::uint8_t> dynamicAuthenticationTemplate) {
  CommandApdu command = make(0x87, static_cast<std::uint8_t>(algorithm), keyReference);
  command.data.assign(dynamicAuthenticationTemplate.begin(), dynamicAuthenticationTemplate.end());
  command.expected = 256;
  return command;
}

CommandApdu generateAsymmetricKeyPair(std::uint8_t keyReference, Algorithm algorithm) {
  CommandApdu command = make(0x47, 0x00, keyReference);
  const std::uint8_t mechanism[] = {0x80, 0x01, static_cast<std::uint8_t>(algorithm)};
  command.data = encodeTlv(0xAC, mechanism);
  command.expected = 256;
  return command;
}

CommandApdu getVersion() {
  CommandApdu command = make(0xFD, 0x00, 0x00);
  command.expected = 256;
  return command;
}

CommandApdu getSerial() {
  CommandApdu command = make(0xF8, 0x00, 0x00);
  command.expected = 256;
  return command;
}

}  // namespace dojang::piv::apdu
