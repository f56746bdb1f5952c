// The kinds of cryptographic operation a session runs, and the one place that says which
// PKCS#11 flag and key attribute each one needs. The module, the wire, the daemon and the
// drivers all use this enum.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "src/common/cryptoki/cryptoki.h"

namespace dojang {

// The values are the wire encoding of CheckOperation (wire::Operation): never renumber them.
// Digest needs no key and is never sent in CheckOperation.
enum class OperationKind : std::uint8_t { Sign = 1, Verify = 2, Decrypt = 3, Digest = 4 };

inline constexpr std::size_t kOperationKindCount = 4;

// A value received from elsewhere (the wire decodes any byte) may name no kind at all.
[[nodiscard]] constexpr bool isOperationKind(OperationKind kind) noexcept {
  switch (kind) {
    case OperationKind::Sign:
    case OperationKind::Verify:
    case OperationKind::Decrypt:
    case OperationKind::Digest:
      return true;
  }
  return false;
}

// 0 .. kOperationKindCount-1, for tables indexed by kind; only for values isOperationKind accepts.
[[nodiscard]] constexpr std::size_t operationIndex(OperationKind kind) noexcept {
  return static_cast<std::size_t>(kind) - 1;
}

// The CK_MECHANISM_INFO flag a mechanism needs for this kind; 0 for a value that names no kind.
[[nodiscard]] constexpr CK_FLAGS mechanismFlag(OperationKind kind) noexcept {
  switch (kind) {
    case OperationKind::Sign:
      return CKF_SIGN;
    case OperationKind::Verify:
      return CKF_VERIFY;
    case OperationKind::Decrypt:
      return CKF_DECRYPT;
    case OperationKind::Digest:
      return CKF_DIGEST;
  }
  return 0;
}

// The key attribute that permits this kind (CKA_SIGN, CKA_VERIFY, CKA_DECRYPT); nullopt for
// Digest, which uses no key, and for a value that names no kind.
[[nodiscard]] constexpr std::optional<CK_ATTRIBUTE_TYPE> keyUsageAttribute(OperationKind kind) noexcept {
  switch (kind) {
    case OperationKind::Sign:
      return CKA_SIGN;
    case OperationKind::Verify:
      return CKA_VERIFY;
    case OperationKind::Decrypt:
      return CKA_DECRYPT;
    case OperationKind::Digest:
      return std::nullopt;
  }
  return std::nullopt;
}

// The class of asymmetric key this kind uses: verification takes the public half.
[[nodiscard]] constexpr CK_OBJECT_CLASS asymmetricKeyClass(OperationKind kind) noexcept {
  return kind == OperationKind::Verify ? CKO_PUBLIC_KEY : CKO_PRIVATE_KEY;
}

// For messages: "sign", "verify", "decrypt", "digest".
[[nodiscard]] constexpr const char* operationName(OperationKind kind) noexcept {
  switch (kind) {
    case OperationKind::Sign:
      return "sign";
    case OperationKind::Verify:
      return "verify";
    case OperationKind::Decrypt:
      return "decrypt";
    case OperationKind::Digest:
      return "digest";
  }
  return "an unknown operation";
}

}  // namespace dojang
