#include "tests/virtual_piv/card_crypto.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <memory>
#include <stdexcept>

namespace dojang::virtual_piv {
namespace {

struct PkeyFree {
  void operator()(EVP_PKEY* key) const noexcept { EVP_PKEY_free(key); }
};
struct PkeyContextFree {
  void operator()(EVP_PKEY_CTX* context) const noexcept { EVP_PKEY_CTX_free(context); }
};
struct CipherContextFree {
  void operator()(EVP_CIPHER_CTX* context) const noexcept { EVP_CIPHER_CTX_free(context); }
};
struct CipherFree {
  void operator()(EVP_CIPHER* cipher) const noexcept { EVP_CIPHER_free(cipher); }
};
struct BignumFree {
  void operator()(BIGNUM* number) const noexcept { BN_free(number); }
};
struct ParamBuildFree {
  void operator()(OSSL_PARAM_BLD* builder) const noexcept { OSSL_PARAM_BLD_free(builder); }
};
struct ParamFree {
  void operator()(OSSL_PARAM* params) const noexcept { OSSL_PARAM_free(params); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;
using PkeyContext = std::unique_ptr<EVP_PKEY_CTX, PkeyContextFree>;

Pkey loadPrivateKey(const Bytes& der) {
  const unsigned char* cursor = der.data();
  Pkey key(d2i_AutoPrivateKey(nullptr, &cursor, static_cast<long>(der.size())));
  if (!key) {
    throw std::runtime_error("the card state holds a private key OpenSSL cannot read");
  }
  return key;
}

Bytes bignumParameter(const EVP_PKEY* key, const char* name, std::size_t width) {
  BIGNUM* raw = nullptr;
  if (EVP_PKEY_get_bn_param(key, name, &raw) != 1) {
    throw std::runtime_error("cannot read an RSA parameter");
  }
  std::unique_ptr<BIGNUM, BignumFree> number(raw);
  const std::size_t length = width != 0 ? width : static_cast<std::size_t>(BN_num_bytes(number.get()));
  Bytes out(length);
  BN_bn2binpad(number.get(), out.data(), static_cast<int>(out.size()));
  return out;
}

Bytes encodedPoint(const EVP_PKEY* key) {
  std::size_t length = 0;
  if (EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, nullptr, 0, &length) != 1) {
    throw std::runtime_error("cannot read an EC public point");
  }
  Bytes point(length);
  EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, point.data(), point.size(), &length);
  point.resize(length);
  return point;
}

const char* cipherName(std::uint8_t id) {
  switch (id) {
    case algorithm::kTripleDes:
      return "DES-EDE3-ECB";
    case algorithm::kAes128:
      return "AES-128-ECB";
    case algorithm::kAes192:
      return "AES-192-ECB";
    case algorithm::kAes256:
      return "AES-256-ECB";
    default:
      return nullptr;
  }
}

}  // namespace

Bytes randomBytes(std::size_t count) {
  Bytes bytes(count);
  if (RAND_bytes(bytes.data(), static_cast<int>(count)) != 1) {
    throw std::runtime_error("RAND_bytes failed");
  }
  return bytes;
}

bool isRsaAlgorithm(std::uint8_t id) { return id == algorithm::kRsa1024 || id == algorithm::kRsa2048; }

bool isAsymmetricAlgorithm(std::uint8_t id) {
  return isRsaAlgorithm(id) || id == algorithm::kEccP256 || id == algorithm::kEccP384;
}

std::size_t managementKeyLength(std::uint8_t id) {
  switch (id) {
    case algorithm::kTripleDes:
    case algorithm::kAes192:
      return 24;
    case algorithm::kAes128:
      return 16;
    case algorithm::kAes256:
      return 32;
    default:
      return 0;
  }
}

std::size_t managementBlockLength(std::uint8_t id) { return id == algorithm::kTripleDes ? 8 : 16; }

std::optional<Bytes> generatePrivateKey(std::uint8_t id) {
  EVP_PKEY* raw = nullptr;
  switch (id) {
    case algorithm::kRsa1024:
      raw = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", std::size_t{1024});
      break;
    case algorithm::kRsa2048:
      raw = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", std::size_t{2048});
      break;
    case algorithm::kEccP256:
      raw = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
      break;
    case algorithm::kEccP384:
      raw = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-384");
      break;
    default:
      return std::nullopt;
  }
  Pkey key(raw);
  if (!key) {
    throw std::runtime_error("key generation failed");
  }
  unsigned char* der = nullptr;
  const int length = i2d_PrivateKey(key.get(), &der);
  if (length <= 0) {
    throw std::runtime_error("cannot encode a generated key");
  }
  Bytes out(der, der + length);
  OPENSSL_clear_free(der, static_cast<std::size_t>(length));
  return out;
}

Bytes publicKeyTemplate(const Bytes& privateKeyDer) {
  const Pkey key = loadPrivateKey(privateKeyDer);
  Bytes body;
  if (EVP_PKEY_get_base_id(key.get()) == EVP_PKEY_RSA) {
    appendTlv(body, 0x81, bignumParameter(key.get(), OSSL_PKEY_PARAM_RSA_N, 0));
    appendTlv(body, 0x82, bignumParameter(key.get(), OSSL_PKEY_PARAM_RSA_E, 0));
  } else {
    appendTlv(body, 0x86, encodedPoint(key.get()));
  }
  return tlv(0x7F49, body);
}

std::optional<Bytes> privateKeyOperation(const Bytes& privateKeyDer, const Bytes& input) {
  const Pkey key = loadPrivateKey(privateKeyDer);
  const PkeyContext context(EVP_PKEY_CTX_new_from_pkey(nullptr, key.get(), nullptr));
  if (!context) {
    throw std::runtime_error("EVP_PKEY_CTX_new_from_pkey failed");
  }
  std::size_t length = 0;
  if (EVP_PKEY_get_base_id(key.get()) == EVP_PKEY_RSA) {
    if (input.size() != static_cast<std::size_t>(EVP_PKEY_get_size(key.get()))) {
      return std::nullopt;
    }
    // The raw private operation is RSA decryption without padding: input^d mod n.
    if (EVP_PKEY_decrypt_init(context.get()) != 1 ||
        EVP_PKEY_CTX_set_rsa_padding(context.get(), RSA_NO_PADDING) != 1 ||
        EVP_PKEY_decrypt(context.get(), nullptr, &length, input.data(), input.size()) != 1) {
      return std::nullopt;
    }
    Bytes out(length);
    if (EVP_PKEY_decrypt(context.get(), out.data(), &length, input.data(), input.size()) != 1) {
      return std::nullopt;  // input not below the modulus
    }
    out.resize(length);
    return out;
  }
  if (input.empty() || EVP_PKEY_sign_init(context.get()) != 1 ||
      EVP_PKEY_sign(context.get(), nullptr, &length, input.data(), input.size()) != 1) {
    return std::nullopt;
  }
  Bytes signature(length);
  if (EVP_PKEY_sign(context.get(), signature.data(), &length, input.data(), input.size()) != 1) {
    return std::nullopt;
  }
  signature.resize(length);
  return signature;
}

std::optional<Bytes> keyAgreement(const Bytes& privateKeyDer, const Bytes& peerPoint) {
  const Pkey key = loadPrivateKey(privateKeyDer);
  if (EVP_PKEY_get_base_id(key.get()) != EVP_PKEY_EC) {
    return std::nullopt;
  }
  char group[64] = {};
  std::size_t groupLength = 0;
  if (EVP_PKEY_get_utf8_string_param(key.get(), OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &groupLength) != 1) {
    return std::nullopt;
  }
  const std::unique_ptr<OSSL_PARAM_BLD, ParamBuildFree> builder(OSSL_PARAM_BLD_new());
  if (!builder ||
      OSSL_PARAM_BLD_push_utf8_string(builder.get(), OSSL_PKEY_PARAM_GROUP_NAME, group, groupLength) != 1 ||
      OSSL_PARAM_BLD_push_octet_string(builder.get(), OSSL_PKEY_PARAM_PUB_KEY, peerPoint.data(),
                                       peerPoint.size()) != 1) {
    return std::nullopt;
  }
  const std::unique_ptr<OSSL_PARAM, ParamFree> params(OSSL_PARAM_BLD_to_param(builder.get()));
  const PkeyContext peerContext(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
  EVP_PKEY* peerRaw = nullptr;
  if (!params || !peerContext || EVP_PKEY_fromdata_init(peerContext.get()) != 1 ||
      EVP_PKEY_fromdata(peerContext.get(), &peerRaw, EVP_PKEY_PUBLIC_KEY, params.get()) != 1) {
    return std::nullopt;
  }
  const Pkey peer(peerRaw);
  const PkeyContext context(EVP_PKEY_CTX_new_from_pkey(nullptr, key.get(), nullptr));
  std::size_t length = 0;
  if (!context || EVP_PKEY_derive_init(context.get()) != 1 || EVP_PKEY_derive_set_peer(context.get(), peer.get()) != 1 ||
      EVP_PKEY_derive(context.get(), nullptr, &length) != 1) {
    return std::nullopt;
  }
  Bytes secret(length);
  if (EVP_PKEY_derive(context.get(), secret.data(), &length) != 1) {
    return std::nullopt;
  }
  secret.resize(length);
  return secret;
}

std::optional<Bytes> managementCipher(std::uint8_t id, const Bytes& key, const Bytes& block, bool encrypt) {
  const char* name = cipherName(id);
  if (name == nullptr || key.size() != managementKeyLength(id) || block.size() != managementBlockLength(id)) {
    return std::nullopt;
  }
  const std::unique_ptr<EVP_CIPHER, CipherFree> cipher(EVP_CIPHER_fetch(nullptr, name, nullptr));
  const std::unique_ptr<EVP_CIPHER_CTX, CipherContextFree> context(EVP_CIPHER_CTX_new());
  if (!cipher || !context ||
      EVP_CipherInit_ex2(context.get(), cipher.get(), key.data(), nullptr, encrypt ? 1 : 0, nullptr) != 1 ||
      EVP_CIPHER_CTX_set_padding(context.get(), 0) != 1) {
    return std::nullopt;
  }
  Bytes out(block.size() + 32);
  int length = 0;
  int tail = 0;
  if (EVP_CipherUpdate(context.get(), out.data(), &length, block.data(), static_cast<int>(block.size())) != 1 ||
      EVP_CipherFinal_ex(context.get(), out.data() + length, &tail) != 1) {
    return std::nullopt;
  }
  out.resize(static_cast<std::size_t>(length + tail));
  return out;
}

}  // namespace dojang::virtual_piv
