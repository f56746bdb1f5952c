// RSA_padding_add_PKCS1_PSS_mgf1 and the RSA_padding_check_* functions are deprecated in
// OpenSSL 3 without a replacement that pads without the private key; the card holds that key, so
// this file (and only this one) uses them.
#define OPENSSL_SUPPRESS_DEPRECATED

#include "drivers/piv/host_crypto.h"

#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include <algorithm>
#include <memory>
#include <array>

#include "src/common/errors/foreign_errors.h"

namespace dojang::piv {

namespace {

struct RsaDeleter final {
  void operator()(RSA* rsa) const noexcept { RSA_free(rsa); }
};
struct EcdsaSigDeleter final {
  void operator()(ECDSA_SIG* sig) const noexcept { ECDSA_SIG_free(sig); }
};

const EVP_MD* digestFor(CK_MECHANISM_TYPE hash) {
  switch (hash) {
    case CKM_SHA_1:
      return EVP_sha1();
    case CKM_SHA224:
      return EVP_sha224();
    case CKM_SHA256:
      return EVP_sha256();
    case CKM_SHA384:
      return EVP_sha384();
    case CKM_SHA512:
      return EVP_sha512();
    default:
      fail(CKR_MECHANISM_PARAM_INVALID, "hash not supported");
  }
}

const EVP_MD* mgfDigestFor(CK_RSA_PKCS_MGF_TYPE mgf) {
  switch (mgf) {
    case CKG_MGF1_SHA1:
      return EVP_sha1();
    case CKG_MGF1_SHA224:
      return EVP_sha224();
    case CKG_MGF1_SHA256:
      return EVP_sha256();
    case CKG_MGF1_SHA384:
      return EVP_sha384();
    case CKG_MGF1_SHA512:
      return EVP_sha512();
    default:
      fail(CKR_MECHANISM_PARAM_INVALID, "MGF not supported");
  }
}

// The hash a combined mechanism (CKM_SHA256_RSA_PKCS, CKM_ECDSA_SHA384, ...) runs first; 0 for
// the ones that take a hash or block from the caller.
CK_MECHANISM_TYPE hashOf(CK_MECHANISM_TYPE mechanism) {
  switch (mechanism) {
    case CKM_SHA1_RSA_PKCS:
    case CKM_SHA1_RSA_PKCS_PSS:
    case CKM_ECDSA_SHA1:
      return CKM_SHA_1;
    case CKM_SHA256_RSA_PKCS:
    case CKM_SHA256_RSA_PKCS_PSS:
    case CKM_ECDSA_SHA256:
      return CKM_SHA256;
    case CKM_SHA384_RSA_PKCS:
    case CKM_SHA384_RSA_PKCS_PSS:
    case CKM_ECDSA_SHA384:
      return CKM_SHA384;
    case CKM_SHA512_RSA_PKCS:
    case CKM_SHA512_RSA_PKCS_PSS:
    case CKM_ECDSA_SHA512:
      return CKM_SHA512;
    default:
      return 0;
  }
}

bool isPss(CK_MECHANISM_TYPE mechanism) {
  return mechanism == CKM_RSA_PKCS_PSS || mechanism == CKM_SHA1_RSA_PKCS_PSS || mechanism == CKM_SHA256_RSA_PKCS_PSS ||
         mechanism == CKM_SHA384_RSA_PKCS_PSS || mechanism == CKM_SHA512_RSA_PKCS_PSS;
}

bool isEcdsa(CK_MECHANISM_TYPE mechanism) {
  return mechanism == CKM_ECDSA || mechanism == CKM_ECDSA_SHA1 || mechanism == CKM_ECDSA_SHA256 ||
         mechanism == CKM_ECDSA_SHA384 || mechanism == CKM_ECDSA_SHA512;
}

Bytes hashData(CK_MECHANISM_TYPE hash, std::span<const std::uint8_t> data) {
  std::array<std::uint8_t, EVP_MAX_MD_SIZE> out{};
  unsigned length = 0;
  checkOpensslStatus(EVP_Digest(data.data(), data.size(), out.data(), &length, digestFor(hash), nullptr), "EVP_Digest");
  return Bytes(out.begin(), out.begin() + length);
}

// DigestInfo prefixes of RFC 8017, 9.2, note 1.
Bytes digestInfo(CK_MECHANISM_TYPE hash, std::span<const std::uint8_t> digest) {
  static const std::uint8_t sha1[] = {0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14};
  static const std::uint8_t sha256[] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                                        0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20};
  static const std::uint8_t sha384[] = {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                                        0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30};
  static const std::uint8_t sha512[] = {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                                        0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40};
  std::span<const std::uint8_t> prefix;
  switch (hash) {
    case CKM_SHA_1:
      prefix = sha1;
      break;
    case CKM_SHA256:
      prefix = sha256;
      break;
    case CKM_SHA384:
      prefix = sha384;
      break;
    case CKM_SHA512:
      prefix = sha512;
      break;
    default:
      fail(CKR_MECHANISM_INVALID, "no DigestInfo for this hash");
  }
  Bytes out(prefix.begin(), prefix.end());
  out.insert(out.end(), digest.begin(), digest.end());
  return out;
}

std::unique_ptr<RSA, RsaDeleter> rsaOf(const PublicKeyFacts& key) {
  const PkeyPtr pkey = loadPublicKey(key);
  return std::unique_ptr<RSA, RsaDeleter>(checkOpenssl(EVP_PKEY_get1_RSA(pkey.get()), "EVP_PKEY_get1_RSA"));
}

Bytes leftPadded(std::span<const std::uint8_t> data, std::size_t length) {
  if (data.size() > length) {
    fail(CKR_DATA_LEN_RANGE, "data longer than the key's modulus");
  }
  Bytes out(length - data.size(), 0);
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

void requireKeyType(const PublicKeyFacts& key, CK_KEY_TYPE type) {
  if (key.keyType != type) {
    fail(CKR_KEY_TYPE_INCONSISTENT, "the mechanism does not fit the key type");
  }
}

token::MechanismEntry entry(CK_MECHANISM_TYPE type, CK_ULONG minBits, CK_ULONG maxBits, CK_FLAGS flags) {
  return {type, CK_MECHANISM_INFO{minBits, maxBits, flags | CKF_HW}};
}

}  // namespace

std::vector<token::MechanismEntry> pivMechanisms() {
  constexpr CK_FLAGS kSign = CKF_SIGN | CKF_VERIFY;
  constexpr CK_FLAGS kEc = CKF_EC_F_P | CKF_EC_NAMEDCURVE | CKF_EC_UNCOMPRESS;
  return {
      entry(CKM_RSA_PKCS_KEY_PAIR_GEN, 1024, 2048, CKF_GENERATE_KEY_PAIR),
      entry(CKM_RSA_PKCS, 1024, 2048, kSign | CKF_DECRYPT),
      entry(CKM_RSA_X_509, 1024, 2048, CKF_SIGN | CKF_DECRYPT),
      entry(CKM_RSA_PKCS_OAEP, 1024, 2048, CKF_DECRYPT),
      entry(CKM_RSA_PKCS_PSS, 1024, 2048, kSign),
      entry(CKM_SHA1_RSA_PKCS, 1024, 2048, kSign),
      entry(CKM_SHA256_RSA_PKCS, 1024, 2048, kSign),
      entry(CKM_SHA384_RSA_PKCS, 1024, 2048, kSign),
      entry(CKM_SHA512_RSA_PKCS, 1024, 2048, kSign),
      entry(CKM_SHA256_RSA_PKCS_PSS, 1024, 2048, kSign),
      entry(CKM_SHA384_RSA_PKCS_PSS, 1024, 2048, kSign),
      entry(CKM_SHA512_RSA_PKCS_PSS, 1024, 2048, kSign),
      entry(CKM_EC_KEY_PAIR_GEN, 256, 384, CKF_GENERATE_KEY_PAIR | kEc),
      entry(CKM_ECDSA, 256, 384, kSign | kEc),
      entry(CKM_ECDSA_SHA1, 256, 384, kSign | kEc),
      entry(CKM_ECDSA_SHA256, 256, 384, kSign | kEc),
      entry(CKM_ECDSA_SHA384, 256, 384, kSign | kEc),
      entry(CKM_ECDSA_SHA512, 256, 384, kSign | kEc),
  };
}

Bytes pkcs1SignatureBlock(std::span<const std::uint8_t> digestInfoBytes, std::size_t k) {
  // EMSA-PKCS1-v1_5 (RFC 8017, 9.2): 00 01 FF..FF 00 T, at least 8 bytes of FF.
  if (digestInfoBytes.size() + 11 > k) {
    fail(CKR_DATA_LEN_RANGE, "data too long for PKCS#1 v1.5 with this key");
  }
  Bytes block(k, 0xFF);
  block[0] = 0x00;
  block[1] = 0x01;
  const std::size_t separator = k - digestInfoBytes.size() - 1;
  block[separator] = 0x00;
  std::copy(digestInfoBytes.begin(), digestInfoBytes.end(), block.begin() + static_cast<std::ptrdiff_t>(separator + 1));
  return block;
}

Bytes pssBlock(const PublicKeyFacts& key, std::span<const std::uint8_t> hash, CK_MECHANISM_TYPE hashAlg,
               CK_RSA_PKCS_MGF_TYPE mgf, CK_ULONG saltLength) {
  const EVP_MD* md = digestFor(hashAlg);
  if (hash.size() != static_cast<std::size_t>(EVP_MD_get_size(md))) {
    fail(CKR_DATA_LEN_RANGE, "the PSS input is not a hash of the named algorithm");
  }
  const auto rsa = rsaOf(key);
  Bytes block(static_cast<std::size_t>(RSA_size(rsa.get())));
  checkOpensslStatus(RSA_padding_add_PKCS1_PSS_mgf1(rsa.get(), block.data(), hash.data(), md, mgfDigestFor(mgf),
                                                    static_cast<int>(saltLength)),
                     "RSA_padding_add_PKCS1_PSS_mgf1");
  return block;
}

Bytes signatureOperand(const token::Mechanism& mechanism, const PublicKeyFacts& key,
                       std::span<const std::uint8_t> data) {
  const CK_MECHANISM_TYPE type = mechanism.type;
  const CK_MECHANISM_TYPE combinedHash = hashOf(type);
  Bytes input = combinedHash != 0 ? hashData(combinedHash, data) : Bytes(data.begin(), data.end());
  if (isEcdsa(type)) {
    requireKeyType(key, CKK_EC);
    // ECDSA uses the leftmost bits of the hash (FIPS 186-4, 6.4); a short one is a smaller number.
    const std::size_t field = operandLength(key);
    if (input.size() > field) {
      input.resize(field);
    }
    return leftPadded(input, field);
  }
  requireKeyType(key, CKK_RSA);
  const std::size_t k = operandLength(key);
  if (type == CKM_RSA_X_509) {
    return leftPadded(input, k);
  }
  if (type == CKM_RSA_PKCS) {
    return pkcs1SignatureBlock(input, k);
  }
  if (isPss(type)) {
    if (mechanism.params.kind != token::MechanismParameters::Kind::Pss) {
      fail(CKR_MECHANISM_PARAM_INVALID, "PSS needs CK_RSA_PKCS_PSS_PARAMS");
    }
    if (combinedHash != 0 && mechanism.params.hashAlg != combinedHash) {
      fail(CKR_MECHANISM_PARAM_INVALID, "the PSS parameters name another hash than the mechanism");
    }
    return pssBlock(key, input, mechanism.params.hashAlg, mechanism.params.mgf, mechanism.params.saltLength);
  }
  if (combinedHash != 0) {
    return pkcs1SignatureBlock(digestInfo(combinedHash, input), k);
  }
  fail(CKR_MECHANISM_INVALID, "not a signature mechanism of this token");
}

Bytes signatureFromCard(const PublicKeyFacts& key, std::span<const std::uint8_t> cardAnswer) {
  if (key.keyType == CKK_RSA) {
    return leftPadded(cardAnswer, operandLength(key));
  }
  const unsigned char* at = cardAnswer.data();
  const std::unique_ptr<ECDSA_SIG, EcdsaSigDeleter> signature(
      d2i_ECDSA_SIG(nullptr, &at, static_cast<long>(cardAnswer.size())));
  if (!signature) {
    (void)takeOpensslErrors();
    fail(CKR_DEVICE_ERROR, "the card's ECDSA signature is not DER");
  }
  const std::size_t field = operandLength(key);
  Bytes out(2 * field);
  const BIGNUM* r = nullptr;
  const BIGNUM* s = nullptr;
  ECDSA_SIG_get0(signature.get(), &r, &s);
  if (BN_bn2binpad(r, out.data(), static_cast<int>(field)) < 0 ||
      BN_bn2binpad(s, out.data() + field, static_cast<int>(field)) < 0) {
    fail(CKR_DEVICE_ERROR, "the card's ECDSA signature does not fit the curve");
  }
  return out;
}

Bytes decryptionOperand(const token::Mechanism& mechanism, const PublicKeyFacts& key,
                        std::span<const std::uint8_t> ciphertext) {
  requireKeyType(key, CKK_RSA);
  if (mechanism.type != CKM_RSA_PKCS && mechanism.type != CKM_RSA_PKCS_OAEP && mechanism.type != CKM_RSA_X_509) {
    fail(CKR_MECHANISM_INVALID, "not a decryption mechanism of this token");
  }
  if (ciphertext.size() > operandLength(key)) {
    fail(CKR_ENCRYPTED_DATA_LEN_RANGE, "ciphertext longer than the modulus");
  }
  return leftPadded(ciphertext, operandLength(key));
}

Bytes plaintextFromCard(const token::Mechanism& mechanism, const PublicKeyFacts& key,
                        std::span<const std::uint8_t> raw) {
  const std::size_t k = operandLength(key);
  const Bytes block = leftPadded(raw, k);
  if (mechanism.type == CKM_RSA_X_509) {
    return block;
  }
  Bytes out(k);
  int length = -1;
  if (mechanism.type == CKM_RSA_PKCS) {
    length = RSA_padding_check_PKCS1_type_2(out.data(), static_cast<int>(out.size()), block.data(),
                                            static_cast<int>(k), static_cast<int>(k));
  } else {
    const auto& params = mechanism.params;
    if (params.kind != token::MechanismParameters::Kind::Oaep) {
      fail(CKR_MECHANISM_PARAM_INVALID, "OAEP needs CK_RSA_PKCS_OAEP_PARAMS");
    }
    length = RSA_padding_check_PKCS1_OAEP_mgf1(out.data(), static_cast<int>(out.size()), block.data(),
                                               static_cast<int>(k), static_cast<int>(k), params.data.data(),
                                               static_cast<int>(params.data.size()), digestFor(params.hashAlg),
                                               mgfDigestFor(params.mgf));
  }
  if (length < 0) {
    (void)takeOpensslErrors();
    fail(CKR_ENCRYPTED_DATA_INVALID, "the decrypted block's padding is wrong");
  }
  out.resize(static_cast<std::size_t>(length));
  return out;
}

void verifyOnHost(const token::Mechanism& mechanism, const PublicKeyFacts& key, std::span<const std::uint8_t> data,
                  std::span<const std::uint8_t> signature) {
  const PkeyPtr pkey = loadPublicKey(key);
  const PkeyCtxPtr context(checkOpenssl(EVP_PKEY_CTX_new(pkey.get(), nullptr), "EVP_PKEY_CTX_new"));
  checkOpensslStatus(EVP_PKEY_verify_init(context.get()), "EVP_PKEY_verify_init");
  const CK_MECHANISM_TYPE combinedHash = hashOf(mechanism.type);
  Bytes input = combinedHash != 0 ? hashData(combinedHash, data) : Bytes(data.begin(), data.end());
  Bytes der;
  std::span<const std::uint8_t> checked = signature;
  if (isEcdsa(mechanism.type)) {
    requireKeyType(key, CKK_EC);
    const std::size_t field = operandLength(key);
    if (signature.size() != 2 * field) {
      fail(CKR_SIGNATURE_LEN_RANGE, "an ECDSA signature is r || s");
    }
    const std::unique_ptr<ECDSA_SIG, EcdsaSigDeleter> parsed(checkOpenssl(ECDSA_SIG_new(), "ECDSA_SIG_new"));
    BIGNUM* r = BN_bin2bn(signature.data(), static_cast<int>(field), nullptr);
    BIGNUM* s = BN_bin2bn(signature.data() + field, static_cast<int>(field), nullptr);
    if (r == nullptr || s == nullptr || ECDSA_SIG_set0(parsed.get(), r, s) != 1) {
      BN_free(r);
      BN_free(s);
      throwOpenssl("ECDSA_SIG_set0");
    }
    unsigned char* encoded = nullptr;
    const int length = i2d_ECDSA_SIG(parsed.get(), &encoded);
    if (length <= 0) {
      throwOpenssl("i2d_ECDSA_SIG");
    }
    der.assign(encoded, encoded + length);
    OPENSSL_free(encoded);
    checked = der;
  } else {
    requireKeyType(key, CKK_RSA);
    if (isPss(mechanism.type)) {
      checkOpensslStatus(EVP_PKEY_CTX_set_rsa_padding(context.get(), RSA_PKCS1_PSS_PADDING), "set_rsa_padding");
      checkOpensslStatus(EVP_PKEY_CTX_set_signature_md(context.get(), digestFor(mechanism.params.hashAlg)),
                         "set_signature_md");
      checkOpensslStatus(EVP_PKEY_CTX_set_rsa_mgf1_md(context.get(), mgfDigestFor(mechanism.params.mgf)), "set_mgf1_md");
      checkOpensslStatus(EVP_PKEY_CTX_set_rsa_pss_saltlen(context.get(), static_cast<int>(mechanism.params.saltLength)),
                         "set_pss_saltlen");
    } else if (mechanism.type == CKM_RSA_PKCS || combinedHash != 0) {
      checkOpensslStatus(EVP_PKEY_CTX_set_rsa_padding(context.get(), RSA_PKCS1_PADDING), "set_rsa_padding");
      if (combinedHash != 0) {
        input = digestInfo(combinedHash, input);
      }
    } else {
      fail(CKR_MECHANISM_INVALID, "not a verification mechanism of this token");
    }
  }
  const int rv = EVP_PKEY_verify(context.get(), checked.data(), checked.size(), input.data(), input.size());
  (void)takeOpensslErrors();
  if (rv != 1) {
    fail(CKR_SIGNATURE_INVALID, "the signature does not verify");
  }
}

}  // namespace dojang::piv
