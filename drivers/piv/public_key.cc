#include "drivers/piv/public_key.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>

#include <string>

#include "drivers/piv/ber_tlv.h"
#include "src/common/errors/foreign_errors.h"

namespace dojang::piv {

namespace {

struct ParamBuildDeleter final {
  void operator()(OSSL_PARAM_BLD* build) const noexcept { OSSL_PARAM_BLD_free(build); }
};
struct ParamDeleter final {
  void operator()(OSSL_PARAM* params) const noexcept { OSSL_PARAM_free(params); }
};

Bytes bignumBytes(EVP_PKEY* key, const char* name) {
  BIGNUM* raw = nullptr;
  checkOpensslStatus(EVP_PKEY_get_bn_param(key, name, &raw), "EVP_PKEY_get_bn_param");
  const BignumPtr number(raw);
  Bytes out(static_cast<std::size_t>(BN_num_bytes(number.get())));
  BN_bn2bin(number.get(), out.data());
  return out;
}

PkeyPtr fromParams(const char* type, OSSL_PARAM* params) {
  const PkeyCtxPtr context(checkOpenssl(EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr), "EVP_PKEY_CTX_new_from_name"));
  checkOpensslStatus(EVP_PKEY_fromdata_init(context.get()), "EVP_PKEY_fromdata_init");
  EVP_PKEY* key = nullptr;
  checkOpensslStatus(EVP_PKEY_fromdata(context.get(), &key, EVP_PKEY_PUBLIC_KEY, params), "EVP_PKEY_fromdata");
  return PkeyPtr(key);
}

PublicKeyFacts describe(EVP_PKEY* key) {
  PublicKeyFacts facts;
  facts.bits = static_cast<CK_ULONG>(EVP_PKEY_get_bits(key));
  unsigned char* der = nullptr;
  const int length = i2d_PUBKEY(key, &der);
  if (length <= 0) {
    throwOpenssl("i2d_PUBKEY");
  }
  const OpensslBytesPtr owner(der);
  facts.subjectPublicKeyInfo.assign(der, der + length);
  if (EVP_PKEY_is_a(key, "RSA") != 0) {
    if (facts.bits != 2048 && facts.bits != 1024) {
      fail(CKR_KEY_TYPE_INCONSISTENT, "a PIV card holds RSA-1024 or RSA-2048 keys, not " + std::to_string(facts.bits));
    }
    facts.keyType = CKK_RSA;
    facts.algorithm = facts.bits == 2048 ? apdu::Algorithm::Rsa2048 : apdu::Algorithm::Rsa1024;
    facts.modulus = bignumBytes(key, OSSL_PKEY_PARAM_RSA_N);
    facts.publicExponent = bignumBytes(key, OSSL_PKEY_PARAM_RSA_E);
    return facts;
  }
  if (EVP_PKEY_is_a(key, "EC") == 0) {
    fail(CKR_KEY_TYPE_INCONSISTENT, "a PIV card holds RSA or EC keys");
  }
  char group[64] = {};
  std::size_t groupLength = 0;
  checkOpensslStatus(EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &groupLength),
                     "EVP_PKEY_get_utf8_string_param");
  const int nid = OBJ_sn2nid(group);
  if (nid == NID_X9_62_prime256v1) {
    facts.algorithm = apdu::Algorithm::EccP256;
  } else if (nid == NID_secp384r1) {
    facts.algorithm = apdu::Algorithm::EccP384;
  } else {
    fail(CKR_KEY_TYPE_INCONSISTENT, std::string("a PIV card holds P-256 or P-384 keys, not ") + group);
  }
  facts.keyType = CKK_EC;
  const ASN1_OBJECT* curve = checkOpenssl(OBJ_nid2obj(nid), "OBJ_nid2obj");  // static: not ours to free
  unsigned char* oid = nullptr;
  const int oidLength = i2d_ASN1_OBJECT(curve, &oid);
  if (oidLength <= 0) {
    throwOpenssl("i2d_ASN1_OBJECT");
  }
  const OpensslBytesPtr oidOwner(oid);
  facts.ecParameters.assign(oid, oid + oidLength);
  Bytes point(256);
  std::size_t pointLength = 0;
  checkOpensslStatus(EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size(), &pointLength),
                     "EVP_PKEY_get_octet_string_param");
  point.resize(pointLength);
  facts.ecPoint = encodeTlv(0x04, point);  // DER OCTET STRING, as PKCS#11 wants CKA_EC_POINT
  return facts;
}

}  // namespace

PublicKeyFacts publicKeyFromGenerated(apdu::Algorithm algorithm, std::span<const std::uint8_t> template7F49) {
  const std::unique_ptr<OSSL_PARAM_BLD, ParamBuildDeleter> build(checkOpenssl(OSSL_PARAM_BLD_new(), "OSSL_PARAM_BLD_new"));
  BignumPtr modulus;
  BignumPtr exponent;
  Bytes point;
  const char* type = "RSA";
  if (algorithm == apdu::Algorithm::Rsa2048 || algorithm == apdu::Algorithm::Rsa1024) {
    const auto n = findTlv(template7F49, 0x81);
    const auto e = findTlv(template7F49, 0x82);
    if (!n || !e) {
      fail(CKR_DEVICE_ERROR, "the card's new RSA public key lacks its modulus or exponent");
    }
    modulus.reset(checkOpenssl(BN_bin2bn(n->data(), static_cast<int>(n->size()), nullptr), "BN_bin2bn"));
    exponent.reset(checkOpenssl(BN_bin2bn(e->data(), static_cast<int>(e->size()), nullptr), "BN_bin2bn"));
    checkOpensslStatus(OSSL_PARAM_BLD_push_BN(build.get(), OSSL_PKEY_PARAM_RSA_N, modulus.get()), "OSSL_PARAM_BLD_push_BN");
    checkOpensslStatus(OSSL_PARAM_BLD_push_BN(build.get(), OSSL_PKEY_PARAM_RSA_E, exponent.get()), "OSSL_PARAM_BLD_push_BN");
  } else {
    const auto value = findTlv(template7F49, 0x86);
    if (!value) {
      fail(CKR_DEVICE_ERROR, "the card's new EC public key lacks its point");
    }
    point.assign(value->begin(), value->end());
    type = "EC";
    const char* curve = algorithm == apdu::Algorithm::EccP384 ? "secp384r1" : "prime256v1";
    checkOpensslStatus(OSSL_PARAM_BLD_push_utf8_string(build.get(), OSSL_PKEY_PARAM_GROUP_NAME, curve, 0),
                       "OSSL_PARAM_BLD_push_utf8_string");
    checkOpensslStatus(OSSL_PARAM_BLD_push_octet_string(build.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size()),
                       "OSSL_PARAM_BLD_push_octet_string");
  }
  const std::unique_ptr<OSSL_PARAM, ParamDeleter> params(
      checkOpenssl(OSSL_PARAM_BLD_to_param(build.get()), "OSSL_PARAM_BLD_to_param"));
  const PkeyPtr key = fromParams(type, params.get());
  return describe(key.get());
}

PublicKeyFacts publicKeyFromSpki(std::span<const std::uint8_t> spki) {
  const unsigned char* at = spki.data();
  const PkeyPtr key(d2i_PUBKEY(nullptr, &at, static_cast<long>(spki.size())));
  if (!key) {
    throwOpenssl("d2i_PUBKEY");
  }
  return describe(key.get());
}

PublicKeyFacts publicKeyFromCertificate(std::span<const std::uint8_t> certificate) {
  const unsigned char* at = certificate.data();
  const X509Ptr parsed(d2i_X509(nullptr, &at, static_cast<long>(certificate.size())));
  if (!parsed) {
    (void)takeOpensslErrors();
    fail(CKR_ATTRIBUTE_VALUE_INVALID, "not a DER X.509 certificate");
  }
  EVP_PKEY* key = X509_get0_pubkey(parsed.get());
  if (key == nullptr) {
    throwOpenssl("X509_get0_pubkey");
  }
  return describe(key);
}

PkeyPtr loadPublicKey(const PublicKeyFacts& facts) {
  const unsigned char* at = facts.subjectPublicKeyInfo.data();
  PkeyPtr key(d2i_PUBKEY(nullptr, &at, static_cast<long>(facts.subjectPublicKeyInfo.size())));
  if (!key) {
    throwOpenssl("d2i_PUBKEY");
  }
  return key;
}

std::size_t operandLength(const PublicKeyFacts& facts) {
  switch (facts.algorithm) {
    case apdu::Algorithm::EccP256:
      return 32;
    case apdu::Algorithm::EccP384:
      return 48;
    default:
      return (facts.bits + 7) / 8;
  }
}

}  // namespace dojang::piv
