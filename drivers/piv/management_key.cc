#include "drivers/piv/management_key.h"

#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>

#include "src/common/errors/foreign_errors.h"

namespace dojang::piv {

namespace {

constexpr std::array<std::uint8_t, 24> kDefaultKey = {1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4,
                                                      5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8};

std::size_t keyLength(apdu::Algorithm algorithm) {
  switch (algorithm) {
    case apdu::Algorithm::TripleDes:
    case apdu::Algorithm::Aes192:
      return 24;
    case apdu::Algorithm::Aes128:
      return 16;
    case apdu::Algorithm::Aes256:
      return 32;
    default:
      fail(CKR_ARGUMENTS_BAD, "not a management key algorithm");
  }
}

const EVP_CIPHER* cipherFor(apdu::Algorithm algorithm) {
  switch (algorithm) {
    case apdu::Algorithm::TripleDes:
      return EVP_des_ede3_ecb();
    case apdu::Algorithm::Aes128:
      return EVP_aes_128_ecb();
    case apdu::Algorithm::Aes192:
      return EVP_aes_192_ecb();
    case apdu::Algorithm::Aes256:
      return EVP_aes_256_ecb();
    default:
      fail(CKR_ARGUMENTS_BAD, "not a management key algorithm");
  }
}

struct CipherContextDeleter final {
  void operator()(EVP_CIPHER_CTX* context) const noexcept { EVP_CIPHER_CTX_free(context); }
};

Bytes runCipher(const ManagementKey& key, std::span<const std::uint8_t> block, bool encrypt) {
  if (block.size() != blockSize(key.algorithm) || key.key.size() != keyLength(key.algorithm)) {
    fail(CKR_ARGUMENTS_BAD, "management key or block of the wrong length");
  }
  const std::unique_ptr<EVP_CIPHER_CTX, CipherContextDeleter> context(
      checkOpenssl(EVP_CIPHER_CTX_new(), "EVP_CIPHER_CTX_new"));
  checkOpensslStatus(EVP_CipherInit_ex(context.get(), cipherFor(key.algorithm), nullptr, key.key.data(), nullptr,
                                       encrypt ? 1 : 0),
                     "EVP_CipherInit_ex");
  checkOpensslStatus(EVP_CIPHER_CTX_set_padding(context.get(), 0), "EVP_CIPHER_CTX_set_padding");
  Bytes out(block.size() + 32);
  int written = 0;
  int final = 0;
  checkOpensslStatus(EVP_CipherUpdate(context.get(), out.data(), &written, block.data(), static_cast<int>(block.size())),
                     "EVP_CipherUpdate");
  checkOpensslStatus(EVP_CipherFinal_ex(context.get(), out.data() + written, &final), "EVP_CipherFinal_ex");
  out.resize(static_cast<std::size_t>(written + final));
  return out;
}

}  // namespace

ManagementKey defaultManagementKey(apdu::Algorithm algorithm) {
  return {algorithm, SecureBytes(std::span<const std::uint8_t>(kDefaultKey))};
}

bool isDefaultKey(const ManagementKey& key) {
  return key.key.size() == kDefaultKey.size() && std::equal(kDefaultKey.begin(), kDefaultKey.end(), key.key.data());
}

std::optional<apdu::Algorithm> parseManagementAlgorithm(std::string_view name) {
  std::string lower(name);
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  if (lower == "3des" || lower == "tdes") {
    return apdu::Algorithm::TripleDes;
  }
  if (lower == "aes128") {
    return apdu::Algorithm::Aes128;
  }
  if (lower == "aes192") {
    return apdu::Algorithm::Aes192;
  }
  if (lower == "aes256") {
    return apdu::Algorithm::Aes256;
  }
  return std::nullopt;
}

ManagementKey parseManagementKey(std::string_view hex, std::optional<apdu::Algorithm> algorithm) {
  std::array<std::uint8_t, 64> bytes{};
  std::size_t count = 0;
  int high = -1;
  for (const char c : hex) {
    if (std::isspace(static_cast<unsigned char>(c)) != 0 || c == ':') {
      continue;
    }
    int value = -1;
    if (c >= '0' && c <= '9') {
      value = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      value = c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      value = c - 'A' + 10;
    }
    if (value < 0 || (high >= 0 && count == bytes.size())) {
      explicit_bzero(bytes.data(), bytes.size());
      fail(CKR_ARGUMENTS_BAD, "a management key is hex text of 32, 48 or 64 digits");
    }
    if (high < 0) {
      high = value;
    } else {
      bytes[count++] = static_cast<std::uint8_t>((high << 4) | value);
      high = -1;
    }
  }
  ManagementKey key;
  key.key = SecureBytes(std::span<const std::uint8_t>(bytes.data(), count));
  explicit_bzero(bytes.data(), bytes.size());
  if (algorithm) {
    key.algorithm = *algorithm;
  } else if (count == 16) {
    key.algorithm = apdu::Algorithm::Aes128;
  } else if (count == 32) {
    key.algorithm = apdu::Algorithm::Aes256;
  }
  if (high >= 0 || count != keyLength(key.algorithm)) {
    fail(CKR_ARGUMENTS_BAD, "a management key is hex text of 32, 48 or 64 digits (" + std::to_string(count) +
                                " bytes given for the algorithm)");
  }
  return key;
}

ManagementKey readManagementKeyFile(const std::string& path, std::optional<apdu::Algorithm> algorithm) {
  std::ifstream in(path);
  if (!in) {
    fail(CKR_GENERAL_ERROR, "cannot read the management key file " + path);
  }
  std::stringstream text;
  text << in.rdbuf();
  std::string content = text.str();
  try {
    ManagementKey key = parseManagementKey(content, algorithm);
    explicit_bzero(content.data(), content.size());
    return key;
  } catch (const Error& error) {
    explicit_bzero(content.data(), content.size());
    fail(CKR_GENERAL_ERROR, path + ": " + error.what());
  }
}

std::size_t blockSize(apdu::Algorithm algorithm) { return algorithm == apdu::Algorithm::TripleDes ? 8 : 16; }

Bytes encryptBlock(const ManagementKey& key, std::span<const std::uint8_t> block) {
  return runCipher(key, block, true);
}

Bytes decryptBlock(const ManagementKey& key, std::span<const std::uint8_t> block) {
  return runCipher(key, block, false);
}

}  // namespace dojang::piv
