// Which type of key each key-using mechanism needs: the one table the daemon's policy and the
// vendor driver both consult.
#pragma once

#include <optional>

#include "src/common/cryptoki/cryptoki.h"

namespace dojang {

// The key type a signing, verification or decryption mechanism needs; nullopt for mechanisms
// that use no key of one fixed type (digests, key generation, anything not listed).
[[nodiscard]] constexpr std::optional<CK_KEY_TYPE> requiredKeyType(CK_MECHANISM_TYPE mechanism) noexcept {
  switch (mechanism) {
    case CKM_RSA_PKCS:
    case CKM_RSA_9796:
    case CKM_RSA_X_509:
    case CKM_MD2_RSA_PKCS:
    case CKM_MD5_RSA_PKCS:
    case CKM_SHA1_RSA_PKCS:
    case CKM_RIPEMD128_RSA_PKCS:
    case CKM_RIPEMD160_RSA_PKCS:
    case CKM_RSA_PKCS_OAEP:
    case CKM_RSA_X9_31:
    case CKM_SHA1_RSA_X9_31:
    case CKM_RSA_PKCS_PSS:
    case CKM_SHA1_RSA_PKCS_PSS:
    case CKM_SHA224_RSA_PKCS:
    case CKM_SHA256_RSA_PKCS:
    case CKM_SHA384_RSA_PKCS:
    case CKM_SHA512_RSA_PKCS:
    case CKM_SHA224_RSA_PKCS_PSS:
    case CKM_SHA256_RSA_PKCS_PSS:
    case CKM_SHA384_RSA_PKCS_PSS:
    case CKM_SHA512_RSA_PKCS_PSS:
      return CKK_RSA;
    case CKM_ECDSA:
    case CKM_ECDSA_SHA1:
    case CKM_ECDSA_SHA224:
    case CKM_ECDSA_SHA256:
    case CKM_ECDSA_SHA384:
    case CKM_ECDSA_SHA512:
      return CKK_EC;
    case CKM_EDDSA:
      return CKK_EC_EDWARDS;
    case CKM_DSA:
    case CKM_DSA_SHA1:
      return CKK_DSA;
    default:  // a mechanism without a fixed key type: the token decides
      return std::nullopt;
  }
}

}  // namespace dojang
