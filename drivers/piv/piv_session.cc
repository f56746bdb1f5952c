#include "drivers/piv/piv_token.h"

#include <algorithm>
#include <cstring>

#include "drivers/piv/host_crypto.h"

namespace dojang::piv {

namespace {

const token::AttributeValue* findAttribute(const token::AttributeList& templ, CK_ATTRIBUTE_TYPE type) {
  for (const auto& attribute : templ) {
    if (attribute.type == type) {
      return &attribute;
    }
  }
  return nullptr;
}

std::optional<CK_ULONG> ulongAttribute(const token::AttributeList& templ, CK_ATTRIBUTE_TYPE type) {
  const auto* attribute = findAttribute(templ, type);
  if (attribute == nullptr) {
    return std::nullopt;
  }
  if (attribute->value.size() != sizeof(CK_ULONG)) {
    fail(CKR_ATTRIBUTE_VALUE_INVALID, "a CK_ULONG attribute of the wrong size");
  }
  CK_ULONG value = 0;
  std::memcpy(&value, attribute->value.data(), sizeof value);
  return value;
}

// DER of the curve OIDs PIV supports (SP 800-78-4 Table 3-2).
const Bytes kP256Oid = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
const Bytes kP384Oid = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22};

apdu::Algorithm generationAlgorithm(const token::Mechanism& mechanism, const token::AttributeList& publicTemplate) {
  if (mechanism.type == CKM_EC_KEY_PAIR_GEN) {
    const auto* params = findAttribute(publicTemplate, CKA_EC_PARAMS);
    if (params == nullptr) {
      fail(CKR_TEMPLATE_INCOMPLETE, "EC key generation needs CKA_EC_PARAMS (P-256 or P-384)");
    }
    if (params->value == kP256Oid) {
      return apdu::Algorithm::EccP256;
    }
    if (params->value == kP384Oid) {
      return apdu::Algorithm::EccP384;
    }
    fail(CKR_CURVE_NOT_SUPPORTED, "a PIV card generates P-256 or P-384 keys");
  }
  if (mechanism.type == CKM_RSA_PKCS_KEY_PAIR_GEN) {
    const auto bits = ulongAttribute(publicTemplate, CKA_MODULUS_BITS).value_or(2048);
    if (const auto* exponent = findAttribute(publicTemplate, CKA_PUBLIC_EXPONENT)) {
      Bytes value = exponent->value;
      value.erase(value.begin(), std::find_if(value.begin(), value.end(), [](std::uint8_t b) { return b != 0; }));
      if (value != Bytes{0x01, 0x00, 0x01}) {
        fail(CKR_ATTRIBUTE_VALUE_INVALID, "a PIV card generates RSA keys with the exponent 65537 only");
      }
    }
    if (bits == 2048) {
      return apdu::Algorithm::Rsa2048;
    }
    if (bits == 1024) {
      return apdu::Algorithm::Rsa1024;
    }
    fail(CKR_ATTRIBUTE_VALUE_INVALID, "a PIV card generates RSA keys of 1024 or 2048 bits");
  }
  fail(CKR_MECHANISM_INVALID, "not a key-pair generation mechanism of a PIV card");
}

std::size_t slotIndexOf(const KeySlot* slot) {
  return static_cast<std::size_t>(slot - keySlots().data());
}

std::optional<std::string> labelOf(const token::AttributeList& templ) {
  const auto* label = findAttribute(templ, CKA_LABEL);
  if (label == nullptr) {
    return std::nullopt;
  }
  return std::string(label->value.begin(), label->value.end());
}

// The slot a CKA_ID selects: the one it names (01, 9a, ...), else the one whose key an
// application gave it (the overlay's CKA_ID).
std::optional<std::size_t> slotOfId(const std::array<SlotContent, kKeySlotCount>& contents,
                                    std::span<const std::uint8_t> id) {
  if (const KeySlot* named = slotForObjectId(id)) {
    return slotIndexOf(named);
  }
  for (std::size_t i = 0; i < kKeySlotCount; ++i) {
    const auto& objectId = contents[i].notes.objectId;
    if (contents[i].hasKey() && objectId && std::equal(objectId->begin(), objectId->end(), id.begin(), id.end())) {
      return i;
    }
  }
  return std::nullopt;
}

}  // namespace

std::vector<token::ObjectId> PivSession::findObjects(const token::AttributeList& templ) {
  std::vector<token::ObjectId> found;
  const auto contents = m_card->contents();
  for (const ObjectKind kind : {ObjectKind::Certificate, ObjectKind::PublicKey, ObjectKind::PrivateKey}) {
    for (std::size_t i = 0; i < kKeySlotCount; ++i) {
      if (objectExists(contents[i], kind) && matchesTemplate(objectAttributes(keySlots()[i], contents[i], kind), templ)) {
        found.push_back(objectIdFor(i, kind));
      }
    }
  }
  return found;
}

std::vector<token::AttributeRead> PivSession::readAttributes(token::ObjectId object,
                                                             std::span<const CK_ATTRIBUTE_TYPE> types) {
  const auto parsed = parseObjectId(object);
  const auto contents = m_card->contents();
  if (!parsed || !objectExists(contents[parsed->first], parsed->second)) {
    fail(CKR_OBJECT_HANDLE_INVALID, "no such object on the PIV card");
  }
  const auto attributes = objectAttributes(keySlots()[parsed->first], contents[parsed->first], parsed->second);
  std::vector<token::AttributeRead> reads;
  for (const CK_ATTRIBUTE_TYPE type : types) {
    token::AttributeRead read{type, CKR_ATTRIBUTE_TYPE_INVALID, {}};
    if (const auto* attribute = findAttribute(attributes, type)) {
      read.status = CKR_OK;
      read.value = attribute->value;
    } else if (isSensitiveAttribute(parsed->second, type)) {
      read.status = CKR_ATTRIBUTE_SENSITIVE;
    }
    reads.push_back(std::move(read));
  }
  return reads;
}

void PivSession::writeAttributes(token::ObjectId object, const token::AttributeList& templ) {
  const auto parsed = parseObjectId(object);
  const auto contents = m_card->contents();
  if (!parsed || !objectExists(contents[parsed->first], parsed->second)) {
    fail(CKR_OBJECT_HANDLE_INVALID, "no such object on the PIV card");
  }
  for (const auto& attribute : templ) {
    if (attribute.type != CKA_LABEL) {
      fail(CKR_ATTRIBUTE_READ_ONLY, "on a PIV card only CKA_LABEL can be changed");
    }
  }
  SlotContent content = contents[parsed->first];
  for (const auto& attribute : templ) {
    std::string label(attribute.value.begin(), attribute.value.end());
    switch (parsed->second) {
      case ObjectKind::PrivateKey:
        content.notes.privateKeyLabel = std::move(label);
        break;
      case ObjectKind::PublicKey:
        content.notes.publicKeyLabel = std::move(label);
        break;
      case ObjectKind::Certificate:
        content.notes.certificateLabel = std::move(label);
        break;
    }
  }
  m_card->updateSlot(parsed->first, std::move(content));
}

token::ObjectId PivSession::createObject(const token::AttributeList& templ) {
  const auto objectClass = ulongAttribute(templ, CKA_CLASS);
  if (objectClass != CKO_CERTIFICATE) {
    fail(CKR_TEMPLATE_INCONSISTENT, "a PIV card takes certificates only (keys are generated on it)");
  }
  if (ulongAttribute(templ, CKA_CERTIFICATE_TYPE).value_or(CKC_X_509) != CKC_X_509) {
    fail(CKR_ATTRIBUTE_VALUE_INVALID, "a PIV card holds X.509 certificates");
  }
  const auto* id = findAttribute(templ, CKA_ID);
  const auto* value = findAttribute(templ, CKA_VALUE);
  if (id == nullptr || value == nullptr) {
    fail(CKR_TEMPLATE_INCOMPLETE, "a certificate for a PIV card needs CKA_VALUE and a CKA_ID naming its key slot");
  }
  const auto contents = m_card->contents();
  const bool namesSlot = slotForObjectId(id->value) != nullptr;
  const auto index = slotOfId(contents, id->value);
  if (!index) {
    fail(CKR_ATTRIBUTE_VALUE_INVALID,
         "the CKA_ID names no PIV key slot (01..18, or 9a, 9c, 9d, 9e, 82..95) and no key generated with it");
  }
  const PublicKeyFacts certified = publicKeyFromCertificate(value->value);
  SlotContent content = contents[*index];
  const bool sameKey = content.hasKey() && content.publicKey->subjectPublicKeyInfo == certified.subjectPublicKeyInfo;
  if (!namesSlot && !sameKey) {
    fail(CKR_ATTRIBUTE_VALUE_INVALID, "the certificate is not for the key with this CKA_ID");
  }
  m_card->withCard([&](PivApplet& applet) {
    m_card->authenticateAdministrator(applet, nullptr);
    m_card->writeCertificate(applet, *index, value->value);
  });
  if (!sameKey) {
    content.notes = SlotNotes{};  // the slot's key is now known from this certificate only
  }
  content.certificate = value->value;
  content.publicKey = certified;
  content.notes.certificateLabel = labelOf(templ);
  m_card->updateSlot(*index, std::move(content));
  return objectIdFor(*index, ObjectKind::Certificate);
}

token::ObjectId PivSession::copyObject(token::ObjectId, const token::AttributeList&) {
  fail(CKR_ACTION_PROHIBITED, "PIV objects cannot be copied");
}

// Standard PIV has no command that deletes a key. Destroying the private key therefore frees its
// slot instead: the slot's certificate is deleted from the card (so that no program, OpenSC
// included, offers the key through it), the key is hidden, and the slot is free for the next key
// generation, which overwrites the key. The public key object is only hidden; the certificate is
// deleted with PUT DATA.
void PivSession::destroyObject(token::ObjectId object) {
  const auto parsed = parseObjectId(object);
  const auto contents = m_card->contents();
  if (!parsed || !objectExists(contents[parsed->first], parsed->second)) {
    fail(CKR_OBJECT_HANDLE_INVALID, "no such object on the PIV card");
  }
  const std::size_t index = parsed->first;
  SlotContent content = contents[index];
  if (parsed->second != ObjectKind::PublicKey && content.certificate) {
    m_card->withCard([&](PivApplet& applet) {
      m_card->authenticateAdministrator(applet, nullptr);
      m_card->writeCertificate(applet, index, {});
    });
    content.certificate.reset();
    content.notes.certificateLabel.reset();
  }
  if (parsed->second == ObjectKind::PrivateKey) {
    content.notes.privateKeyDestroyed = true;
  } else if (parsed->second == ObjectKind::PublicKey) {
    content.notes.publicKeyDestroyed = true;
  }
  if (content.publicKey && content.notes.privateKeyDestroyed && content.notes.publicKeyDestroyed) {
    content = SlotContent{};  // nothing of the pair is left to show
  }
  m_card->updateSlot(index, std::move(content));
}

CK_ULONG PivSession::objectSize(token::ObjectId object) {
  const auto parsed = parseObjectId(object);
  if (!parsed || !objectExists(m_card->contents()[parsed->first], parsed->second)) {
    fail(CKR_OBJECT_HANDLE_INVALID, "no such object on the PIV card");
  }
  return CK_UNAVAILABLE_INFORMATION;
}

token::KeyPair PivSession::generateKeyPair(const token::Mechanism& mechanism, const token::AttributeList& publicTemplate,
                                           const token::AttributeList& privateTemplate,
                                           const token::KeyGeneration& target) {
  const apdu::Algorithm algorithm = generationAlgorithm(mechanism, publicTemplate);
  const auto contents = m_card->contents();
  std::optional<std::size_t> index;
  SlotNotes notes;
  notes.generatedOnCard = true;
  notes.privateKeyLabel = labelOf(privateTemplate);
  notes.publicKeyLabel = labelOf(publicTemplate);
  if (target.idHint && !target.idHint->empty() && slotForObjectId(*target.idHint) != nullptr) {
    index = slotIndexOf(slotForObjectId(*target.idHint));
  } else {
    if (target.idHint && !target.idHint->empty()) {
      if (slotOfId(contents, *target.idHint)) {
        fail(CKR_TEMPLATE_INCONSISTENT, "a key with this CKA_ID is on the PIV card already");
      }
      notes.objectId = *target.idHint;
    }
    for (const std::size_t candidate : generationOrder()) {
      if (contents[candidate].isFree()) {
        index = candidate;
        break;
      }
    }
    if (!index) {
      fail(CKR_DEVICE_MEMORY, "every PIV key slot holds a key");
    }
  }
  const KeySlot& slot = keySlots()[*index];
  const bool staleCertificate = contents[*index].certificate.has_value();
  PublicKeyFacts generated;
  m_card->withCard([&](PivApplet& applet) {
    m_card->authenticateAdministrator(applet, target.adminCredential);
    generated = applet.generateKeyPair(slot, algorithm);
    if (staleCertificate) {
      m_card->writeCertificate(applet, *index, {});
    }
  });
  SlotContent content;
  content.publicKey = std::move(generated);
  content.notes = std::move(notes);
  m_card->updateSlot(*index, std::move(content));
  return {objectIdFor(*index, ObjectKind::PublicKey), objectIdFor(*index, ObjectKind::PrivateKey)};
}

PivSession::KeyUse PivSession::keyFor(token::ObjectId object) {
  const auto parsed = parseObjectId(object);
  const auto contents = m_card->contents();
  if (!parsed || parsed->second == ObjectKind::Certificate || !objectExists(contents[parsed->first], parsed->second)) {
    fail(CKR_KEY_HANDLE_INVALID, "no such key on the PIV card");
  }
  return {parsed->first, parsed->second, *contents[parsed->first].publicKey};
}

void PivSession::checkKeyOperation(OperationKind kind, const token::Mechanism& mechanism, token::ObjectId key) {
  const KeyUse use = keyFor(key);
  const bool wantsPrivate = kind == OperationKind::Sign || kind == OperationKind::Decrypt;
  if (wantsPrivate != (use.kind == ObjectKind::PrivateKey)) {
    fail(CKR_KEY_FUNCTION_NOT_PERMITTED, "the key does not allow this operation");
  }
  if (kind == OperationKind::Decrypt && use.key.keyType != CKK_RSA) {
    fail(CKR_KEY_FUNCTION_NOT_PERMITTED, "EC keys on a PIV card do not decrypt");
  }
  // The mechanism must fit the key: try building an operand for an empty-enough input.
  const bool ecMechanism = mechanism.type == CKM_ECDSA || mechanism.type == CKM_ECDSA_SHA1 ||
                           mechanism.type == CKM_ECDSA_SHA256 || mechanism.type == CKM_ECDSA_SHA384 ||
                           mechanism.type == CKM_ECDSA_SHA512;
  if (ecMechanism != (use.key.keyType == CKK_EC)) {
    fail(CKR_KEY_TYPE_INCONSISTENT, "the mechanism does not fit the key type");
  }
}

Bytes PivSession::privateOperation(const KeyUse& use, std::span<const std::uint8_t> operand,
                                   const token::ContextLogin& context) {
  const KeySlot& slot = keySlots()[use.slotIndex];
  return m_card->withCard([&](PivApplet& applet) {
    if (slot.alwaysAuthenticate && context.given && context.pin != nullptr) {
      m_card->verifyForOperation(applet, *context.pin);
    }
    return applet.privateKeyOperation(slot, use.key.algorithm, operand);
  });
}

Bytes PivSession::sign(const token::Mechanism& mechanism, token::ObjectId key, std::span<const std::uint8_t> data,
                       const token::ContextLogin& context) {
  const KeyUse use = keyFor(key);
  if (use.kind != ObjectKind::PrivateKey) {
    fail(CKR_KEY_FUNCTION_NOT_PERMITTED, "signing needs the private key");
  }
  const Bytes operand = signatureOperand(mechanism, use.key, data);
  return signatureFromCard(use.key, privateOperation(use, operand, context));
}

void PivSession::verify(const token::Mechanism& mechanism, token::ObjectId key, std::span<const std::uint8_t> data,
                        std::span<const std::uint8_t> signature) {
  verifyOnHost(mechanism, keyFor(key).key, data, signature);
}

Bytes PivSession::decrypt(const token::Mechanism& mechanism, token::ObjectId key, std::span<const std::uint8_t> data,
                          const token::ContextLogin& context) {
  const KeyUse use = keyFor(key);
  if (use.kind != ObjectKind::PrivateKey) {
    fail(CKR_KEY_FUNCTION_NOT_PERMITTED, "decryption needs the private key");
  }
  const Bytes operand = decryptionOperand(mechanism, use.key, data);
  return plaintextFromCard(mechanism, use.key, privateOperation(use, operand, context));
}

Bytes PivSession::digest(const token::Mechanism&, std::span<const std::uint8_t>) {
  fail(CKR_MECHANISM_INVALID, "a PIV card offers no digest mechanisms");
}

Bytes PivSession::generateRandom(std::size_t) { fail(CKR_RANDOM_NO_RNG, "a PIV card offers no random numbers"); }

void PivSession::initPin(const SecureBytes& pin) { m_card->initPin(pin); }

void PivSession::setPin(const SecureBytes& oldPin, const SecureBytes& newPin) { m_card->setPin(oldPin, newPin); }

}  // namespace dojang::piv
