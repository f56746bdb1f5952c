// The PKCS#11 objects a PIV card shows, like ykcs11 and OpenSC: per occupied key slot a private
// key, a public key and (when the slot's data object holds one) a certificate, all with the
// slot's CKA_ID (key_slots.h). Everything here is built from what the driver cached at
// insertion, so reading objects sends no APDUs.
#pragma once

#include <cstdint>
#include <optional>
#include <utility>

#include "drivers/piv/key_slots.h"
#include "drivers/piv/public_key.h"
#include "drivers/token/token.h"

namespace dojang::piv {

// What the driver knows about one key slot.
struct SlotContent {
  std::optional<Bytes> certificate;         // DER
  std::optional<PublicKeyFacts> publicKey;  // from the certificate, or from key generation
  bool generatedOnCard = false;             // generated on the card by this driver (CKA_LOCAL)
  [[nodiscard]] bool occupied() const noexcept { return publicKey.has_value(); }
};

enum class ObjectKind : std::uint8_t { PrivateKey = 1, PublicKey = 2, Certificate = 3 };

// Object IDs are (slot index + 1) * 16 + kind: stable for the card's life in the daemon.
[[nodiscard]] token::ObjectId objectIdFor(std::size_t slotIndex, ObjectKind kind);
[[nodiscard]] std::optional<std::pair<std::size_t, ObjectKind>> parseObjectId(token::ObjectId object);
[[nodiscard]] bool objectExists(const SlotContent& content, ObjectKind kind);

// Every readable attribute of the object.
[[nodiscard]] token::AttributeList objectAttributes(const KeySlot& slot, const SlotContent& content, ObjectKind kind);
// Attributes that exist but are never revealed (private key material).
[[nodiscard]] bool isSensitiveAttribute(ObjectKind kind, CK_ATTRIBUTE_TYPE type);
// Whether every attribute of `templ` is among `attributes` with the same value.
[[nodiscard]] bool matchesTemplate(const token::AttributeList& attributes, const token::AttributeList& templ);

}  // namespace dojang::piv
