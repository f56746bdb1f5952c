// Every APDU the PIV driver sends, as a named constructor that cites where it is defined:
// NIST SP 800-73-4 Part 2 ("Part 2, 3.x.y"), ISO/IEC 7816-4, and Yubico's documented PIV
// extensions (INS FD, F8). Nothing else in the driver builds command bytes.
#pragma once

#include <cstdint>
#include <span>

#include "drivers/pcsc/apdu.h"
#include "drivers/token/secure_bytes.h"

namespace dojang::piv::apdu {

using pcsc::CommandApdu;

// The PIV Card Application's AID with its version (Part 1, 2.2: A0 00 00 03 08 00 00 10 00 01 00);
// SELECT takes the right-truncated form without the version.
inline constexpr std::uint8_t kPivAid[] = {0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00};

// Key references (SP 800-78-4 Table 6-1).
inline constexpr std::uint8_t kPinReference = 0x80;
inline constexpr std::uint8_t kPukReference = 0x81;
inline constexpr std::uint8_t kManagementKeyReference = 0x9B;

// Algorithm identifiers (SP 800-78-4 Table 6-2).
enum class Algorithm : std::uint8_t {
  TripleDes = 0x03,
  Rsa1024 = 0x06,
  Rsa2048 = 0x07,
  Aes128 = 0x08,
  Aes192 = 0x0A,
  Aes256 = 0x0C,
  EccP256 = 0x11,
  EccP384 = 0x14,
};

// Part 2, 3.1.1 SELECT: 00 A4 04 00, the AID; the answer is the application property template.
CommandApdu select();
// Part 2, 3.1.2 GET DATA: 00 CB 3F FF with the tag list 5C { tag } of one data object.
CommandApdu getData(std::uint32_t objectTag);
// Part 2, 3.3.2 PUT DATA: 00 DB 3F FF with 5C { tag } 53 { value } (chained by the exchange).
CommandApdu putData(std::uint32_t objectTag, std::span<const std::uint8_t> value);
// Part 2, 3.2.1 VERIFY: 00 20 00 80 with the PIN padded with FF to 8 bytes.
CommandApdu verify(const SecureBytes& pin);
// Part 2, 3.2.1 VERIFY without data: the answer tells whether the PIN is verified (9000) or how
// many tries are left (63Cx).
CommandApdu verifyStatus();
// Part 2, 3.2.2 CHANGE REFERENCE DATA: 00 24 00 <80 PIN | 81 PUK> with old || new, each padded.
CommandApdu changeReferenceData(std::uint8_t reference, const SecureBytes& oldValue, const SecureBytes& newValue);
// Part 2, 3.2.3 RESET RETRY COUNTER: 00 2C 00 80 with PUK || new PIN, each padded.
CommandApdu resetRetryCounter(const SecureBytes& puk, const SecureBytes& newPin);
// Part 2, 3.2.4 GENERAL AUTHENTICATE: 00 87 <algorithm> <key reference> with the dynamic
// authentication template 7C { ... } given whole (see piv_card.cc for the templates used).
CommandApdu generalAuthenticate(Algorithm algorithm, std::uint8_t keyReference,
                                std::span<const std::uint8_t> dynamicAuthenticationTemplate);
// Part 2, 3.3.3 GENERATE ASYMMETRIC KEY PAIR: 00 47 00 <key reference> with the control
// reference template AC { 80 <algorithm> }; the answer is 7F49 { public key }.
CommandApdu generateAsymmetricKeyPair(std::uint8_t keyReference, Algorithm algorithm);
// Yubico PIV extension, GET VERSION: 00 FD 00 00; three bytes major, minor, patch.
CommandApdu getVersion();
// Yubico PIV extension, GET SERIAL: 00 F8 00 00; a four-byte big-endian serial number.
CommandApdu getSerial();

// PIN and PUK as VERIFY and friends want them: 8 bytes, padded with FF (Part 2, 3.2.1).
// Throws Error(CKR_PIN_LEN_RANGE) outside 1..8 bytes.
SecureBytes paddedPin(const SecureBytes& pin);

}  // namespace dojang::piv::apdu
