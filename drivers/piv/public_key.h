// A PIV slot's public key, as the card gives it (GENERATE ASYMMETRIC KEY PAIR's 7F49 template,
// SP 800-73-4 Part 2, 3.3.3) or as its certificate holds it, and the PKCS#11 attributes that
// describe it.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "drivers/piv/piv_apdu.h"
#include "src/common/cryptoki/cryptoki.h"
#include "src/common/ossl/owners.h"

namespace dojang::piv {

using Bytes = std::vector<std::uint8_t>;

struct PublicKeyFacts {
  apdu::Algorithm algorithm = apdu::Algorithm::Rsa2048;  // for GENERAL AUTHENTICATE
  CK_KEY_TYPE keyType = CKK_RSA;
  CK_ULONG bits = 0;
  Bytes subjectPublicKeyInfo;  // DER
  Bytes modulus;               // RSA, big-endian
  Bytes publicExponent;        // RSA
  Bytes ecParameters;          // EC: DER of the curve's OID
  Bytes ecPoint;               // EC: DER OCTET STRING of the uncompressed point
};

// From the value of 7F49: 81 modulus, 82 exponent (RSA) or 86 point (EC).
[[nodiscard]] PublicKeyFacts publicKeyFromGenerated(apdu::Algorithm algorithm, std::span<const std::uint8_t> template7F49);
// From a DER SubjectPublicKeyInfo; throws Error(CKR_KEY_TYPE_INCONSISTENT) for keys PIV cannot hold.
[[nodiscard]] PublicKeyFacts publicKeyFromSpki(std::span<const std::uint8_t> spki);
// From a DER certificate; throws Error(CKR_ATTRIBUTE_VALUE_INVALID) when it does not parse.
[[nodiscard]] PublicKeyFacts publicKeyFromCertificate(std::span<const std::uint8_t> certificate);
[[nodiscard]] PkeyPtr loadPublicKey(const PublicKeyFacts& facts);

// The length of the field the card signs over: 32 for P-256, 48 for P-384, k for RSA.
[[nodiscard]] std::size_t operandLength(const PublicKeyFacts& facts);

}  // namespace dojang::piv
