// The PKCS#11 objects a PIV card shows, like ykcs11 and OpenSC: per occupied key slot a private
// key, a public key and (when the slot's data object holds one) a certificate, all with the
// slot's CKA_ID (key_slots.h), unless the slot overlay (slot_overlay.h) gave them an
// application's CKA_ID and labels. Everything here is built from what the driver cached at
// insertion, so reading objects sends no APDUs.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "drivers/piv/key_slots.h"
#include "drivers/piv/public_key.h"
#include "drivers/token/token.h"

namespace dojang::piv {

// What PIV has no room for, kept by the driver per card and key slot (slot_overlay.h): an
// application's CKA_ID and labels, CKA_LOCAL, and the objects an application destroyed.
struct SlotNotes {
  // The application's CKA_ID; it replaces the slot's own (01, 02, ...) for all three objects.
  std::optional<Bytes> objectId;
  std::optional<std::string> privateKeyLabel;  // empty optionals: the slot's fixed labels
  std::optional<std::string> publicKeyLabel;
  std::optional<std::string> certificateLabel;
  bool generatedOnCard = false;  // generated on the card by this driver (CKA_LOCAL)
  // PIV cannot delete a key: a destroyed private key frees its slot for the next key generation
  // (which overwrites it) and is hidden until then; a destroyed public key is only hidden.
  bool privateKeyDestroyed = false;
  bool publicKeyDestroyed = false;
  bool operator==(const SlotNotes&) const = default;
};

// What the driver knows about one key slot.
struct SlotContent {
  std::optional<Bytes> certificate;         // DER
  std::optional<PublicKeyFacts> publicKey;  // from the certificate, or from key generation
  SlotNotes notes;
  // A usable key is in the slot (its private key object exists).
  [[nodiscard]] bool hasKey() const noexcept { return publicKey.has_value() && !notes.privateKeyDestroyed; }
  // Key generation without a slot named may use it.
  [[nodiscard]] bool isFree() const noexcept { return !certificate && !hasKey(); }
  // The CKA_ID its objects show: the application's, else the slot's.
  [[nodiscard]] Bytes objectIdOf(const KeySlot& slot) const { return notes.objectId.value_or(Bytes{slot.objectId}); }
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
