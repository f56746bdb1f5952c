// What dojangd enforces whatever a client or a backend says: the mechanisms it serves, the
// attributes it never reveals, and the attributes it forces on private keys.
#pragma once

#include <optional>
#include <span>
#include <vector>

#include "drivers/token/token.h"
#include "src/common/cryptoki/cryptoki.h"
#include "src/common/cryptoki/secret_attributes.h"

namespace dojang::daemon {

// Mechanisms clients may use; a backend's list is cut down to these.
[[nodiscard]] bool isServedMechanism(CK_MECHANISM_TYPE type) noexcept;
// Which key type a served signing/decryption mechanism needs (CKK_RSA or CKK_EC, from
// mechanism_key_type.h); ~0 for any other mechanism.
[[nodiscard]] CK_KEY_TYPE keyTypeFor(CK_MECHANISM_TYPE type) noexcept;
[[nodiscard]] bool isKeyGenerationMechanism(CK_MECHANISM_TYPE type) noexcept;

// OAEP with a label (pSourceData) is refused: tokens disagree on it (SoftHSM rejects it at
// C_DecryptInit) and dojang checks mechanisms before the token sees them. Empty labels, which
// TLS, CMS and every common client use, work.
[[nodiscard]] bool isServedMechanismParameters(const token::Mechanism& mechanism) noexcept;

// Attributes of private and secret keys never leave the daemon, even if a backend would hand them
// out (a token with extractable keys, a misconfigured SoftHSM): dojang::isSecretAttribute.
using dojang::isSecretAttribute;

// Sets CKA_SENSITIVE=TRUE, CKA_EXTRACTABLE=FALSE and CKA_PRIVATE=TRUE in a private- or
// secret-key template, replacing whatever the client asked for.
void enforcePrivateKeyTemplate(token::AttributeList& templ);

// Refuses (CKR_TEMPLATE_INCONSISTENT) a template with more than wire::kMaxTemplateAttributes
// entries, or one that names a type twice: the daemon would judge one value and the token keep
// another.
void checkTemplate(const token::AttributeList& templ);

// A CK_BBOOL or CK_ULONG attribute of a template: nullopt when absent, CKR_ATTRIBUTE_VALUE_INVALID
// when its value has the wrong size (the daemon must not guess what the token will make of it).
[[nodiscard]] std::optional<bool> templateBool(const token::AttributeList& templ, CK_ATTRIBUTE_TYPE type);
[[nodiscard]] std::optional<CK_ULONG> templateUlong(const token::AttributeList& templ,
                                                    CK_ATTRIBUTE_TYPE type);

[[nodiscard]] constexpr bool isKeyClass(CK_OBJECT_CLASS objectClass) noexcept {
  return objectClass == CKO_PRIVATE_KEY || objectClass == CKO_SECRET_KEY;
}

// Refuses (CKR_ATTRIBUTE_READ_ONLY) a template for C_SetAttributeValue or C_CopyObject that
// would loosen protection: CKA_SENSITIVE=FALSE, CKA_EXTRACTABLE=TRUE, or CKA_PRIVATE=FALSE on a
// private object or a key.
void refuseLooserProtection(const token::AttributeList& templ, CK_OBJECT_CLASS objectClass, bool isPrivate);

// Reads a CK_ULONG or CK_BBOOL attribute value as stored in native byte order.
[[nodiscard]] bool readUlong(const token::Bytes& value, CK_ULONG& out) noexcept;
[[nodiscard]] bool readBool(const token::Bytes& value, bool& out) noexcept;
[[nodiscard]] token::Bytes ulongBytes(CK_ULONG value);
[[nodiscard]] token::Bytes boolBytes(bool value);

}  // namespace dojang::daemon
