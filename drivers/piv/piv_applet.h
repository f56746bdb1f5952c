// The PIV Card Application (SP 800-73-4 Part 2) over one APDU channel: the card logic of the
// driver, with no PC/SC in it, so that unit tests run it against a scripted card. A PivApplet
// lives for one card transaction (pcsc::CardTransaction is its channel).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "drivers/pcsc/apdu.h"
#include "drivers/piv/key_slots.h"
#include "drivers/piv/management_key.h"
#include "drivers/piv/public_key.h"
#include "drivers/token/secure_bytes.h"

namespace dojang::piv {

struct FirmwareVersion {
  std::uint8_t major = 0;
  std::uint8_t minor = 0;
  std::uint8_t patch = 0;
};

// What VERIFY without data says about the PIN (Part 2, 3.2.1).
struct PinStatus {
  bool verified = false;
  std::optional<unsigned> retriesLeft;  // 63Cx; 0 when blocked (6983)
};

class PivApplet final {
 public:
  // `selectedBefore`: this card's PIV application answered in an earlier transaction, so an
  // "instruction not supported" now means another application was selected in between.
  explicit PivApplet(pcsc::ApduChannel& channel, bool selectedBefore = false)
      : m_channel(channel), m_selectedOnce(selectedBefore) {}

  // SELECT the PIV application; throws Error(CKR_TOKEN_NOT_RECOGNIZED) when the card has none.
  void select();
  // GET DATA of one object's value (the content of its 53 wrapper); nullopt when the card does
  // not have it (6A82).
  [[nodiscard]] std::optional<Bytes> readObject(std::uint32_t tag);
  // PUT DATA of one object's value (wrapped in 53 here). Needs the management key.
  void writeObject(std::uint32_t tag, std::span<const std::uint8_t> value);
  // The certificate in a key slot's object, as DER: 53 { 70 cert, 71 certinfo, FE }, inflated
  // when certinfo says it is gzip-compressed (Part 1, Table 10, CertInfo bit 0).
  [[nodiscard]] std::optional<Bytes> readCertificate(const KeySlot& slot);
  // PUT DATA of a certificate (uncompressed, CertInfo 00); empty `der` deletes it. Needs the
  // management key authenticated in this transaction.
  void writeCertificate(const KeySlot& slot, std::span<const std::uint8_t> der);
  // The CHUID's GUID (tag 34) or, without one, its FASC-N (tag 30), as hex; nullopt without CHUID.
  [[nodiscard]] std::optional<std::string> chuidSerial();
  // YubiKey only; nullopt from cards that do not know the instruction.
  [[nodiscard]] std::optional<FirmwareVersion> yubikeyVersion();
  [[nodiscard]] std::optional<std::uint32_t> yubikeySerial();

  [[nodiscard]] PinStatus pinStatus();
  // Throws PinIncorrect with the tries left, or PinLocked.
  void verifyPin(const SecureBytes& pin);
  // VERIFY with P1 = FF (Part 2, 3.2.1): the PIN is no longer verified. Cards that do not know it
  // are left as they are.
  void resetPinStatus();
  // CHANGE REFERENCE DATA for the PIN (80) or PUK (81).
  void changeReference(std::uint8_t reference, const SecureBytes& oldValue, const SecureBytes& newValue);
  // Checks the PUK without changing it (CHANGE REFERENCE DATA with the same old and new value):
  // PIV has no VERIFY for the PUK.
  void checkPuk(const SecureBytes& puk);
  void resetRetryCounter(const SecureBytes& puk, const SecureBytes& newPin);

  // Mutual authentication with the card management key (Part 2, Appendix A, "witness" and
  // "challenge"): the card proves it knows the key, and so do we. Throws
  // Error(CKR_FUNCTION_REJECTED, Refused) when the card does not accept the key.
  void authenticateManagementKey(const ManagementKey& key);

  // GENERATE ASYMMETRIC KEY PAIR; needs the management key authenticated.
  [[nodiscard]] PublicKeyFacts generateKeyPair(const KeySlot& slot, apdu::Algorithm algorithm);
  // GENERAL AUTHENTICATE with 7C { 82 00, 81 input }: the card's private-key operation on
  // `input` (a hash for ECDSA, a padded block for RSA); the answer's 82 value (DER ECDSA
  // signature, raw RSA result).
  [[nodiscard]] Bytes privateKeyOperation(const KeySlot& slot, apdu::Algorithm algorithm,
                                          std::span<const std::uint8_t> input);

 private:
  pcsc::ResponseApdu send(const pcsc::CommandApdu& command);
  pcsc::ApduChannel& m_channel;
  bool m_selectedOnce = false;
  bool m_reselected = false;  // at most once per transaction
};

}  // namespace dojang::piv
