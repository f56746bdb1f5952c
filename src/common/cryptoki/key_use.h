// What C_SignInit, C_VerifyInit or C_DecryptInit answers for a key, judged from the key's class,
// type and usage attribute: the one copy of these rules. dojangd's policy applies them to the
// facts it caches; the vendor driver applies them to its token's attributes, to report what the
// token's Init would say without starting an operation that PKCS#11 2.40 cannot cancel.
#pragma once

#include <optional>

#include "src/common/cryptoki/cryptoki.h"
#include "src/common/cryptoki/operation_kind.h"

namespace dojang {

struct KeyUseFacts {
  CK_OBJECT_CLASS objectClass = ~CK_OBJECT_CLASS{0};
  CK_KEY_TYPE keyType = ~CK_KEY_TYPE{0};
  bool usageAllowed = false;  // CKA_SIGN, CKA_VERIFY or CKA_DECRYPT, as `kind` needs
};

struct KeyUseRefusal {
  CK_RV rv = CKR_OK;
  const char* reason = "";
};

// nullopt when the key may be used; `requiredType` is the key type the mechanism needs (nullopt:
// any). `kind` is Sign, Verify or Decrypt.
[[nodiscard]] constexpr std::optional<KeyUseRefusal> refuseKeyUse(OperationKind kind,
                                                                  std::optional<CK_KEY_TYPE> requiredType,
                                                                  const KeyUseFacts& key) noexcept {
  if (key.objectClass != CKO_PRIVATE_KEY && key.objectClass != CKO_PUBLIC_KEY &&
      key.objectClass != CKO_SECRET_KEY) {
    return KeyUseRefusal{CKR_KEY_HANDLE_INVALID, "the object is not a key"};
  }
  // A secret key passes here for mechanisms of no fixed key type (an HMAC, say).
  if (key.objectClass != asymmetricKeyClass(kind) && key.objectClass != CKO_SECRET_KEY) {
    return KeyUseRefusal{CKR_KEY_TYPE_INCONSISTENT, "the wrong class of key for this operation"};
  }
  if (requiredType && (key.keyType != *requiredType || key.objectClass == CKO_SECRET_KEY)) {
    return KeyUseRefusal{CKR_KEY_TYPE_INCONSISTENT, "the mechanism needs another type of key"};
  }
  if (!key.usageAllowed) {
    return KeyUseRefusal{CKR_KEY_FUNCTION_NOT_PERMITTED, "the key's usage attribute forbids this operation"};
  }
  return std::nullopt;
}

}  // namespace dojang
