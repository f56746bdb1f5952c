#include "src/daemon/stand_in_keys.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>

#include "src/common/cryptoki/secret_attributes.h"
#include "src/daemon/policy.h"

namespace dojang::daemon {

namespace {

using Reads = std::vector<token::AttributeRead>;

const token::Bytes* valueOf(const Reads& reads, CK_ATTRIBUTE_TYPE type) {
  for (const auto& read : reads) {
    if (read.type == type && read.status == CKR_OK) {
      return &read.value;
    }
  }
  return nullptr;
}

std::optional<bool> boolOf(const Reads& reads, CK_ATTRIBUTE_TYPE type) {
  const auto* value = valueOf(reads, type);
  bool out = false;
  if (value == nullptr || !readBool(*value, out)) {
    return std::nullopt;
  }
  return out;
}

token::Bytes bignumBytes(const EVP_PKEY* key, const char* name) {
  BIGNUM* number = nullptr;
  if (EVP_PKEY_get_bn_param(key, name, &number) != 1) {
    return {};
  }
  token::Bytes out(static_cast<std::size_t>(BN_num_bytes(number)));
  BN_bn2bin(number, out.data());
  BN_free(number);
  return out;
}

// The key facts a certificate's SubjectPublicKeyInfo gives: RSA modulus and exponent, or the
// named curve as CKA_EC_PARAMS. False for keys dojang does not serve.
bool describeFromCertificate(const token::Bytes& der, StandInKey& key) {
  const unsigned char* cursor = der.data();
  std::unique_ptr<X509, decltype(&X509_free)> certificate(
      d2i_X509(nullptr, &cursor, static_cast<long>(der.size())), &X509_free);
  if (!certificate) {
    return false;
  }
  const EVP_PKEY* publicKey = X509_get0_pubkey(certificate.get());
  if (publicKey == nullptr) {
    return false;
  }
  if (EVP_PKEY_is_a(publicKey, "RSA")) {
    key.keyType = CKK_RSA;
    key.attributes[CKA_MODULUS] = bignumBytes(publicKey, OSSL_PKEY_PARAM_RSA_N);
    key.attributes[CKA_PUBLIC_EXPONENT] = bignumBytes(publicKey, OSSL_PKEY_PARAM_RSA_E);
    key.canSign = true;
    key.canDecrypt = true;
  } else if (EVP_PKEY_is_a(publicKey, "EC")) {
    char curve[80] = {};
    std::size_t length = 0;
    if (EVP_PKEY_get_utf8_string_param(publicKey, OSSL_PKEY_PARAM_GROUP_NAME, curve, sizeof curve, &length) !=
        1) {
      return false;
    }
    std::unique_ptr<ASN1_OBJECT, decltype(&ASN1_OBJECT_free)> oid(OBJ_txt2obj(curve, 0), &ASN1_OBJECT_free);
    const int size = oid ? i2d_ASN1_OBJECT(oid.get(), nullptr) : -1;
    if (size <= 0) {
      return false;
    }
    token::Bytes params(static_cast<std::size_t>(size));
    unsigned char* out = params.data();
    i2d_ASN1_OBJECT(oid.get(), &out);
    key.keyType = CKK_EC;
    key.attributes[CKA_EC_PARAMS] = std::move(params);
    key.canSign = true;
  } else {
    return false;
  }
  if (const auto* name = X509_get_subject_name(certificate.get())) {
    const int size = i2d_X509_NAME(name, nullptr);
    if (size > 0) {
      token::Bytes subject(static_cast<std::size_t>(size));
      unsigned char* out = subject.data();
      i2d_X509_NAME(name, &out);
      key.attributes[CKA_SUBJECT] = std::move(subject);
    }
  }
  return true;
}

bool describeFromPublicKey(const Reads& reads, StandInKey& key) {
  const auto* type = valueOf(reads, CKA_KEY_TYPE);
  CK_ULONG keyType = 0;
  if (type == nullptr || !readUlong(*type, keyType) || (keyType != CKK_RSA && keyType != CKK_EC)) {
    return false;
  }
  key.keyType = keyType;
  for (CK_ATTRIBUTE_TYPE copied : {CKA_MODULUS, CKA_PUBLIC_EXPONENT, CKA_EC_PARAMS, CKA_SUBJECT}) {
    if (const auto* value = valueOf(reads, copied)) {
      key.attributes[copied] = *value;
    }
  }
  key.canSign = boolOf(reads, CKA_VERIFY).value_or(true);
  key.canDecrypt = keyType == CKK_RSA && boolOf(reads, CKA_ENCRYPT).value_or(false);
  return true;
}

}  // namespace

token::AttributeRead StandInKey::read(CK_ATTRIBUTE_TYPE type) const {
  if (isSecretAttribute(CKO_PRIVATE_KEY, type)) {
    return {type, CKR_ATTRIBUTE_SENSITIVE, {}};
  }
  if (const auto it = attributes.find(type); it != attributes.end()) {
    return {type, CKR_OK, it->second};
  }
  return {type, CKR_ATTRIBUTE_TYPE_INVALID, {}};
}

bool StandInKey::matches(const token::AttributeList& templ) const {
  return std::all_of(templ.begin(), templ.end(), [&](const token::AttributeValue& wanted) {
    const auto it = attributes.find(wanted.type);
    return it != attributes.end() && it->second == wanted.value;
  });
}

void StandInKeys::rebuild(const std::vector<Reads>& sources) {
  std::vector<StandInKey> keys;
  // Public keys first: they say what the key may do; a certificate only fills in the rest.
  for (const CK_OBJECT_CLASS wantedClass : {CKO_PUBLIC_KEY, CKO_CERTIFICATE}) {
    for (const auto& reads : sources) {
      const auto* classValue = valueOf(reads, CKA_CLASS);
      CK_ULONG objectClass = 0;
      const auto* keyId = valueOf(reads, CKA_ID);
      if (classValue == nullptr || !readUlong(*classValue, objectClass) || objectClass != wantedClass ||
          keyId == nullptr || keyId->empty()) {
        continue;
      }
      StandInKey key;
      key.keyId = *keyId;
      bool described = false;
      if (objectClass == CKO_PUBLIC_KEY) {
        described = describeFromPublicKey(reads, key);
      } else if (const auto* der = valueOf(reads, CKA_VALUE)) {
        described = describeFromCertificate(*der, key);
      }
      const bool known = std::any_of(keys.begin(), keys.end(), [&](const StandInKey& other) {
        return other.keyId == key.keyId && other.keyType == key.keyType;
      });
      if (!described || known) {
        continue;
      }
      auto [slot, added] = m_ids.try_emplace({key.keyId, key.keyType}, m_nextId);
      if (added) {
        ++m_nextId;
      }
      key.id = slot->second;
      key.attributes[CKA_CLASS] = ulongBytes(CKO_PRIVATE_KEY);
      key.attributes[CKA_KEY_TYPE] = ulongBytes(key.keyType);
      key.attributes[CKA_ID] = key.keyId;
      const auto* label = valueOf(reads, CKA_LABEL);
      key.attributes[CKA_LABEL] = label != nullptr ? *label : token::Bytes{};
      key.attributes[CKA_TOKEN] = boolBytes(true);
      key.attributes[CKA_PRIVATE] = boolBytes(true);
      key.attributes[CKA_MODIFIABLE] = boolBytes(false);
      key.attributes[CKA_SENSITIVE] = boolBytes(true);
      key.attributes[CKA_ALWAYS_SENSITIVE] = boolBytes(true);
      key.attributes[CKA_EXTRACTABLE] = boolBytes(false);
      key.attributes[CKA_NEVER_EXTRACTABLE] = boolBytes(true);
      key.attributes[CKA_SIGN] = boolBytes(key.canSign);
      key.attributes[CKA_DECRYPT] = boolBytes(key.canDecrypt);
      key.attributes[CKA_SIGN_RECOVER] = boolBytes(false);
      key.attributes[CKA_UNWRAP] = boolBytes(false);
      key.attributes[CKA_DERIVE] = boolBytes(false);
      key.attributes[CKA_ALWAYS_AUTHENTICATE] = boolBytes(false);
      keys.push_back(std::move(key));
    }
  }
  m_keys = std::move(keys);
}

const StandInKey* StandInKeys::find(token::ObjectId id) const {
  const auto it =
      std::find_if(m_keys.begin(), m_keys.end(), [&](const StandInKey& key) { return key.id == id; });
  return it == m_keys.end() ? nullptr : &*it;
}

bool StandInKeys::covers(std::span<const std::uint8_t> keyId, CK_KEY_TYPE keyType) const {
  return std::any_of(m_keys.begin(), m_keys.end(), [&](const StandInKey& key) {
    return key.keyType == keyType &&
           std::equal(key.keyId.begin(), key.keyId.end(), keyId.begin(), keyId.end());
  });
}

}  // namespace dojang::daemon
