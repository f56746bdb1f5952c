// The attributes that hold key material: of private and secret keys, they never leave the
// daemon or a card driver, whatever a backend would hand out. One list, for the daemon's policy
// and for drivers that build objects themselves (PIV).
#pragma once

#include "src/common/cryptoki/cryptoki.h"

namespace dojang {

[[nodiscard]] constexpr bool isSecretAttribute(CK_OBJECT_CLASS objectClass, CK_ATTRIBUTE_TYPE type) noexcept {
  if (objectClass == CKO_SECRET_KEY) {
    return type == CKA_VALUE;
  }
  if (objectClass != CKO_PRIVATE_KEY) {
    return false;
  }
  switch (type) {
    case CKA_VALUE:
    case CKA_PRIVATE_EXPONENT:
    case CKA_PRIME_1:
    case CKA_PRIME_2:
    case CKA_EXPONENT_1:
    case CKA_EXPONENT_2:
    case CKA_COEFFICIENT:
      return true;
    default:
      return false;
  }
}

}  // namespace dojang
