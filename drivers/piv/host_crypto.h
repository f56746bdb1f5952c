// The host's half of a PIV private-key operation. The card does only the raw operation (SP
// 800-73-4 Part 2, 3.2.4: ECDSA over a hash, RSA over a whole block); hashing, PKCS#1 v1.5 and
// PSS padding, unpadding after decryption, and turning the card's DER ECDSA signature into
// PKCS#11's r || s are done here, with OpenSSL.
#pragma once

#include <span>
#include <vector>

#include "drivers/piv/public_key.h"
#include "drivers/token/token.h"

namespace dojang::piv {

// What this driver offers, with CKF_SIGN / CKF_VERIFY / CKF_DECRYPT / CKF_ENCRYPT /
// CKF_GENERATE_KEY_PAIR and the key sizes PIV cards hold.
[[nodiscard]] std::vector<token::MechanismEntry> pivMechanisms();

// The operand for GENERAL AUTHENTICATE: the hash (cut or zero-extended to the curve's size) for
// ECDSA, the padded k-byte block for RSA. Throws Error(CKR_MECHANISM_INVALID) for mechanisms that
// do not fit the key, CKR_DATA_LEN_RANGE for data that does not fit the mechanism.
[[nodiscard]] Bytes signatureOperand(const token::Mechanism& mechanism, const PublicKeyFacts& key,
                                     std::span<const std::uint8_t> data);
// The signature a PKCS#11 caller gets from the card's answer: r || s for ECDSA, k bytes for RSA.
[[nodiscard]] Bytes signatureFromCard(const PublicKeyFacts& key, std::span<const std::uint8_t> cardAnswer);

// The k-byte operand for an RSA decryption (the ciphertext, left-padded with zeros).
[[nodiscard]] Bytes decryptionOperand(const token::Mechanism& mechanism, const PublicKeyFacts& key,
                                      std::span<const std::uint8_t> ciphertext);
// The plaintext from the card's raw result: PKCS#1 v1.5 type 2 or OAEP removed on the host,
// nothing for CKM_RSA_X_509. Throws Error(CKR_ENCRYPTED_DATA_INVALID) when the padding is wrong.
[[nodiscard]] Bytes plaintextFromCard(const token::Mechanism& mechanism, const PublicKeyFacts& key,
                                      std::span<const std::uint8_t> raw);

// C_Verify with the public key on the host; throws Error(CKR_SIGNATURE_INVALID).
void verifyOnHost(const token::Mechanism& mechanism, const PublicKeyFacts& key, std::span<const std::uint8_t> data,
                  std::span<const std::uint8_t> signature);

// Padding blocks, exposed for unit tests.
[[nodiscard]] Bytes pkcs1SignatureBlock(std::span<const std::uint8_t> digestInfo, std::size_t k);
[[nodiscard]] Bytes pssBlock(const PublicKeyFacts& key, std::span<const std::uint8_t> hash, CK_MECHANISM_TYPE hashAlg,
                             CK_RSA_PKCS_MGF_TYPE mgf, CK_ULONG saltLength);

}  // namespace dojang::piv
