// The PIV Card Application Administration Key (key reference 9B, "management key"): what it is,
// where it comes from, and the block cipher for mutual authentication (SP 800-73-4 Part 2,
// 3.2.4 and Appendix A; algorithms per SP 800-78-4 Table 6-2).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "drivers/piv/piv_apdu.h"
#include "drivers/token/secure_bytes.h"

namespace dojang::piv {

using Bytes = std::vector<std::uint8_t>;

struct ManagementKey {
  apdu::Algorithm algorithm = apdu::Algorithm::TripleDes;
  SecureBytes key;
};

// The factory key every PIV vendor ships (and every tutorial prints):
// 010203040506070801020304050607080102030405060708, 3DES (AES-192 on YubiKey 5.7 and later).
[[nodiscard]] ManagementKey defaultManagementKey(apdu::Algorithm algorithm = apdu::Algorithm::TripleDes);
[[nodiscard]] bool isDefaultKey(const ManagementKey& key);

// "3des", "aes128", "aes192", "aes256" (case-insensitive); nullopt for anything else.
[[nodiscard]] std::optional<apdu::Algorithm> parseManagementAlgorithm(std::string_view name);
// Hex text (whitespace and ':' ignored) into a key. Without an algorithm, the length decides:
// 16 bytes AES-128, 24 bytes 3DES, 32 bytes AES-256. Throws Error(CKR_ARGUMENTS_BAD).
[[nodiscard]] ManagementKey parseManagementKey(std::string_view hex, std::optional<apdu::Algorithm> algorithm);
// Reads a key file (hex, as yubico-piv-tool prints it). Throws Error(CKR_GENERAL_ERROR).
[[nodiscard]] ManagementKey readManagementKeyFile(const std::string& path, std::optional<apdu::Algorithm> algorithm);

// The cipher's block: 8 bytes for 3DES, 16 for AES; witness and challenge are one block.
[[nodiscard]] std::size_t blockSize(apdu::Algorithm algorithm);
// One block through the cipher in ECB mode, without padding.
[[nodiscard]] Bytes encryptBlock(const ManagementKey& key, std::span<const std::uint8_t> block);
[[nodiscard]] Bytes decryptBlock(const ManagementKey& key, std::span<const std::uint8_t> block);

}  // namespace dojang::piv
