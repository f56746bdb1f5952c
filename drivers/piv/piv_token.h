// token::Token and token::TokenSession over a PivCard.
#pragma once

#include <memory>

#include "drivers/piv/piv_card.h"
#include "drivers/token/token.h"

namespace dojang::piv {

class PivToken final : public token::Token {
 public:
  explicit PivToken(std::shared_ptr<PivCard> card) : m_card(std::move(card)) {}

  token::TokenDescription describe() override;
  // From the driver's record of the card's answers (VERIFY without data at insertion, and every
  // PIN check since): PIN state changes only through PIN commands, and this driver sends them
  // all, so no APDU is needed to tell it. Other programs using the card are the exception; their
  // wrong PINs show up at the next PIN check.
  token::PinStates pinState() override;
  std::vector<token::MechanismEntry> mechanisms() override;
  std::unique_ptr<token::TokenSession> openSession() override;
  // CKU_USER: VERIFY with the PIN. CKU_SO: the PUK (checked, not used up; see PivCard).
  void login(CK_USER_TYPE user, const SecureBytes* pin) override;
  void logout() override;
  // The card's management key as hex (yubico-piv-tool's form), checked by mutual authentication.
  void authorizeAdministrator(const SecureBytes& credential) override;

 private:
  std::shared_ptr<PivCard> m_card;
};

class PivSession final : public token::TokenSession {
 public:
  explicit PivSession(std::shared_ptr<PivCard> card) : m_card(std::move(card)) {}

  std::vector<token::ObjectId> findObjects(const token::AttributeList& templ) override;
  std::vector<token::AttributeRead> readAttributes(token::ObjectId object,
                                                   std::span<const CK_ATTRIBUTE_TYPE> types) override;
  // CKA_LABEL only, kept in the slot overlay; anything else is CKR_ATTRIBUTE_READ_ONLY.
  void writeAttributes(token::ObjectId object, const token::AttributeList& templ) override;
  // A CKO_CERTIFICATE (X.509) whose CKA_ID names a key slot, or is the overlay's CKA_ID of a key
  // on the card (then the certificate must be for that key): written with PUT DATA.
  token::ObjectId createObject(const token::AttributeList& templ) override;
  token::ObjectId copyObject(token::ObjectId object, const token::AttributeList& templ) override;
  // A certificate is deleted (PUT DATA with an empty object). PIV cannot delete keys: a private
  // key's slot is freed instead (its certificate deleted, the key hidden until the next key
  // generation there overwrites it); a public key is only hidden.
  void destroyObject(token::ObjectId object) override;
  CK_ULONG objectSize(token::ObjectId object) override;
  // On the card, in the slot the CKA_ID names, or else (no CKA_ID, or an application's own one,
  // which the overlay keeps) the first free one in generationOrder(). A certificate left in that
  // slot belongs to the old key and is deleted. Labels from the templates go to the overlay.
  token::KeyPair generateKeyPair(const token::Mechanism& mechanism,
                                 const token::AttributeList& publicTemplate,
                                 const token::AttributeList& privateTemplate,
                                 const token::KeyGeneration& target) override;

  void checkKeyOperation(OperationKind kind, const token::Mechanism& mechanism, token::ObjectId key) override;
  Bytes sign(const token::Mechanism& mechanism, token::ObjectId key, std::span<const std::uint8_t> data,
             const token::ContextLogin& context) override;
  void verify(const token::Mechanism& mechanism, token::ObjectId key, std::span<const std::uint8_t> data,
              std::span<const std::uint8_t> signature) override;
  Bytes decrypt(const token::Mechanism& mechanism, token::ObjectId key, std::span<const std::uint8_t> data,
                const token::ContextLogin& context) override;
  Bytes digest(const token::Mechanism& mechanism, std::span<const std::uint8_t> data) override;
  Bytes generateRandom(std::size_t length) override;

  void initPin(const SecureBytes& pin) override;
  void setPin(const SecureBytes& oldPin, const SecureBytes& newPin) override;

 private:
  struct KeyUse {
    std::size_t slotIndex = 0;
    ObjectKind kind = ObjectKind::PrivateKey;
    PublicKeyFacts key;
  };
  KeyUse keyFor(token::ObjectId object);
  Bytes privateOperation(const KeyUse& use, std::span<const std::uint8_t> operand,
                         const token::ContextLogin& context);

  std::shared_ptr<PivCard> m_card;
};

}  // namespace dojang::piv
