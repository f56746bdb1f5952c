#include "drivers/piv/piv_objects.h"

#include <openssl/x509.h>

#include <algorithm>
#include <cstring>

#include "src/common/cryptoki/secret_attributes.h"
#include "src/common/errors/foreign_errors.h"
#include "src/common/ossl/owners.h"

namespace dojang::piv {

namespace {

token::Bytes ulongBytes(CK_ULONG value) {
  token::Bytes bytes(sizeof value);
  std::memcpy(bytes.data(), &value, sizeof value);
  return bytes;
}

token::Bytes boolBytes(bool value) {
  return {static_cast<std::uint8_t>(value ? CK_TRUE : CK_FALSE)};
}

token::Bytes textBytes(const std::string& text) {
  return token::Bytes(text.begin(), text.end());
}

template <class T, class Encode>
token::Bytes derOf(T* object, Encode encode) {
  unsigned char* der = nullptr;
  const int length = encode(object, &der);
  if (length <= 0) {
    throwOpenssl("DER encoding of a certificate field");
  }
  const OpensslBytesPtr owner(der);
  return token::Bytes(der, der + length);
}

struct CertificateFields {
  token::Bytes subject;
  token::Bytes issuer;
  token::Bytes serialNumber;
};

std::optional<CertificateFields> certificateFields(const std::optional<Bytes>& certificate) {
  if (!certificate) {
    return std::nullopt;
  }
  const unsigned char* at = certificate->data();
  const X509Ptr parsed(d2i_X509(nullptr, &at, static_cast<long>(certificate->size())));
  if (!parsed) {
    (void)takeOpensslErrors();
    return std::nullopt;
  }
  CertificateFields fields;
  fields.subject = derOf(X509_get_subject_name(parsed.get()), i2d_X509_NAME);
  fields.issuer = derOf(X509_get_issuer_name(parsed.get()), i2d_X509_NAME);
  fields.serialNumber = derOf(X509_get0_serialNumber(parsed.get()), i2d_ASN1_INTEGER);
  return fields;
}

void addKeyFacts(token::AttributeList& out, const PublicKeyFacts& key) {
  out.push_back({CKA_KEY_TYPE, ulongBytes(key.keyType)});
  if (key.keyType == CKK_RSA) {
    out.push_back({CKA_MODULUS, key.modulus});
    out.push_back({CKA_PUBLIC_EXPONENT, key.publicExponent});
    out.push_back({CKA_MODULUS_BITS, ulongBytes(key.bits)});
  } else {
    out.push_back({CKA_EC_PARAMS, key.ecParameters});
    out.push_back({CKA_EC_POINT, key.ecPoint});
  }
  out.push_back({CKA_PUBLIC_KEY_INFO, key.subjectPublicKeyInfo});
}

}  // namespace

token::ObjectId objectIdFor(std::size_t slotIndex, ObjectKind kind) {
  return (static_cast<token::ObjectId>(slotIndex) + 1) * 16 + static_cast<token::ObjectId>(kind);
}

std::optional<std::pair<std::size_t, ObjectKind>> parseObjectId(token::ObjectId object) {
  const auto kind = object % 16;
  const auto slot = object / 16;
  if (slot < 1 || slot > kKeySlotCount || kind < 1 || kind > 3) {
    return std::nullopt;
  }
  return std::pair{static_cast<std::size_t>(slot - 1), static_cast<ObjectKind>(kind)};
}

bool objectExists(const SlotContent& content, ObjectKind kind) {
  switch (kind) {
    case ObjectKind::Certificate:
      return content.certificate.has_value();
    case ObjectKind::PublicKey:
      return content.publicKey.has_value() && !content.notes.publicKeyDestroyed;
    case ObjectKind::PrivateKey:
      return content.hasKey();
  }
  return false;
}

token::AttributeList objectAttributes(const KeySlot& slot, const SlotContent& content, ObjectKind kind) {
  token::AttributeList out;
  const auto fields = certificateFields(content.certificate);
  out.push_back({CKA_TOKEN, boolBytes(true)});
  // Only CKA_LABEL can change (in the overlay); keys are "destroyed" by freeing their slot.
  out.push_back({CKA_MODIFIABLE, boolBytes(true)});
  out.push_back({CKA_COPYABLE, boolBytes(false)});
  out.push_back({CKA_DESTROYABLE, boolBytes(true)});
  out.push_back({CKA_ID, content.objectIdOf(slot)});
  const SlotNotes& notes = content.notes;
  if (kind == ObjectKind::Certificate) {
    out.push_back({CKA_CLASS, ulongBytes(CKO_CERTIFICATE)});
    out.push_back({CKA_PRIVATE, boolBytes(false)});
    out.push_back({CKA_LABEL, textBytes(notes.certificateLabel.value_or(slot.certificateLabel))});
    out.push_back({CKA_CERTIFICATE_TYPE, ulongBytes(CKC_X_509)});
    out.push_back({CKA_CERTIFICATE_CATEGORY, ulongBytes(0)});
    out.push_back({CKA_TRUSTED, boolBytes(false)});
    out.push_back({CKA_VALUE, *content.certificate});
    if (fields) {
      out.push_back({CKA_SUBJECT, fields->subject});
      out.push_back({CKA_ISSUER, fields->issuer});
      out.push_back({CKA_SERIAL_NUMBER, fields->serialNumber});
    }
    return out;
  }
  const PublicKeyFacts& key = *content.publicKey;
  const bool rsa = key.keyType == CKK_RSA;
  addKeyFacts(out, key);
  out.push_back({CKA_LOCAL, boolBytes(notes.generatedOnCard)});
  out.push_back({CKA_KEY_GEN_MECHANISM, ulongBytes(!notes.generatedOnCard ? CK_UNAVAILABLE_INFORMATION
                                                   : rsa                  ? CKM_RSA_PKCS_KEY_PAIR_GEN
                                                                          : CKM_EC_KEY_PAIR_GEN)});
  out.push_back({CKA_DERIVE, boolBytes(false)});
  if (fields) {
    out.push_back({CKA_SUBJECT, fields->subject});
  }
  if (kind == ObjectKind::PublicKey) {
    out.push_back({CKA_CLASS, ulongBytes(CKO_PUBLIC_KEY)});
    out.push_back({CKA_PRIVATE, boolBytes(false)});
    out.push_back({CKA_LABEL, textBytes(notes.publicKeyLabel.value_or(slot.name + " pubkey"))});
    out.push_back({CKA_VERIFY, boolBytes(true)});
    out.push_back({CKA_ENCRYPT, boolBytes(false)});
    out.push_back({CKA_WRAP, boolBytes(false)});
    out.push_back({CKA_VERIFY_RECOVER, boolBytes(false)});
    out.push_back({CKA_TRUSTED, boolBytes(false)});
    return out;
  }
  out.push_back({CKA_CLASS, ulongBytes(CKO_PRIVATE_KEY)});
  out.push_back({CKA_PRIVATE, boolBytes(true)});
  out.push_back({CKA_LABEL, textBytes(notes.privateKeyLabel.value_or(slot.name + " key"))});
  out.push_back({CKA_SIGN, boolBytes(true)});
  out.push_back({CKA_DECRYPT, boolBytes(rsa)});
  out.push_back({CKA_UNWRAP, boolBytes(false)});
  out.push_back({CKA_SIGN_RECOVER, boolBytes(false)});
  out.push_back({CKA_SENSITIVE, boolBytes(true)});
  out.push_back({CKA_EXTRACTABLE, boolBytes(false)});
  // Keys imported into the card may have existed outside it before; only ours are known not to.
  out.push_back({CKA_ALWAYS_SENSITIVE, boolBytes(notes.generatedOnCard)});
  out.push_back({CKA_NEVER_EXTRACTABLE, boolBytes(notes.generatedOnCard)});
  out.push_back({CKA_ALWAYS_AUTHENTICATE, boolBytes(slot.alwaysAuthenticate)});
  out.push_back({CKA_WRAP_WITH_TRUSTED, boolBytes(false)});
  return out;
}

bool isSensitiveAttribute(ObjectKind kind, CK_ATTRIBUTE_TYPE type) {
  return kind == ObjectKind::PrivateKey && isSecretAttribute(CKO_PRIVATE_KEY, type);
}

bool matchesTemplate(const token::AttributeList& attributes, const token::AttributeList& templ) {
  return std::all_of(templ.begin(), templ.end(), [&](const token::AttributeValue& wanted) {
    return std::any_of(attributes.begin(), attributes.end(), [&](const token::AttributeValue& have) {
      return have.type == wanted.type && have.value == wanted.value;
    });
  });
}

}  // namespace dojang::piv
