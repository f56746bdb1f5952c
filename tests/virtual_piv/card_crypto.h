// The card's cryptography through OpenSSL 3: key generation inside the card, the private-key
// operations of GENERAL AUTHENTICATE, and the management key's block cipher.
#pragma once

#include <cstdint>
#include <optional>

#include "tests/virtual_piv/tlv.h"

namespace dojang::virtual_piv {

// SP 800-78-4 table 6-2 algorithm identifiers.
namespace algorithm {
inline constexpr std::uint8_t kTripleDes = 0x03;
inline constexpr std::uint8_t kRsa1024 = 0x06;
inline constexpr std::uint8_t kRsa2048 = 0x07;
inline constexpr std::uint8_t kAes128 = 0x08;
inline constexpr std::uint8_t kAes192 = 0x0A;
inline constexpr std::uint8_t kAes256 = 0x0C;
inline constexpr std::uint8_t kEccP256 = 0x11;
inline constexpr std::uint8_t kEccP384 = 0x14;
}  // namespace algorithm

Bytes randomBytes(std::size_t count);

bool isAsymmetricAlgorithm(std::uint8_t id);
bool isRsaAlgorithm(std::uint8_t id);
// Key length in bytes of a management key algorithm, 0 when `id` is none.
std::size_t managementKeyLength(std::uint8_t id);
// The cipher's block: the size of witnesses and challenges.
std::size_t managementBlockLength(std::uint8_t id);

// A new private key as PKCS#8 DER; nullopt for an unknown algorithm.
std::optional<Bytes> generatePrivateKey(std::uint8_t id);
// SP 800-73-4 Part 2 3.3.2: 7F49 { 81 modulus, 82 exponent } or 7F49 { 86 uncompressed point }.
Bytes publicKeyTemplate(const Bytes& privateKeyDer);
// RSA: the raw private operation (input as long as the modulus and below it; signing with the
// host's padding and decryption are both this). EC: an ECDSA signature (DER) over the input taken
// as the hash. nullopt when the input does not fit.
std::optional<Bytes> privateKeyOperation(const Bytes& privateKeyDer, const Bytes& input);
// ECDH (SP 800-73-4 key agreement): the x coordinate of the shared point with `peerPoint`.
std::optional<Bytes> keyAgreement(const Bytes& privateKeyDer, const Bytes& peerPoint);
// One ECB block of the management key's cipher.
std::optional<Bytes> managementCipher(std::uint8_t id, const Bytes& key, const Bytes& block, bool encrypt);

}  // namespace dojang::virtual_piv
