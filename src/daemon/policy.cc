#include "src/daemon/policy.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "src/common/cryptoki/mechanism_key_type.h"
#include "src/common/errors/error.h"
#include "src/common/wire/wire_limits.h"

namespace dojang::daemon {

namespace {
constexpr CK_MECHANISM_TYPE kRsaSigning[] = {
    CKM_RSA_PKCS,           CKM_RSA_PKCS_PSS,        CKM_RSA_PKCS_OAEP,       CKM_SHA1_RSA_PKCS,
    CKM_SHA224_RSA_PKCS,    CKM_SHA256_RSA_PKCS,     CKM_SHA384_RSA_PKCS,     CKM_SHA512_RSA_PKCS,
    CKM_SHA1_RSA_PKCS_PSS,  CKM_SHA224_RSA_PKCS_PSS, CKM_SHA256_RSA_PKCS_PSS, CKM_SHA384_RSA_PKCS_PSS,
    CKM_SHA512_RSA_PKCS_PSS};
constexpr CK_MECHANISM_TYPE kEcSigning[] = {CKM_ECDSA,        CKM_ECDSA_SHA1,   CKM_ECDSA_SHA224,
                                            CKM_ECDSA_SHA256, CKM_ECDSA_SHA384, CKM_ECDSA_SHA512};
constexpr CK_MECHANISM_TYPE kDigests[] = {CKM_SHA_1, CKM_SHA224, CKM_SHA256, CKM_SHA384, CKM_SHA512};
constexpr CK_MECHANISM_TYPE kKeyGeneration[] = {CKM_RSA_PKCS_KEY_PAIR_GEN, CKM_EC_KEY_PAIR_GEN};

template <std::size_t N>
bool contains(const CK_MECHANISM_TYPE (&list)[N], CK_MECHANISM_TYPE type) {
  return std::find(std::begin(list), std::end(list), type) != std::end(list);
}

void setAttribute(token::AttributeList& templ, CK_ATTRIBUTE_TYPE type, token::Bytes value) {
  std::erase_if(templ, [type](const token::AttributeValue& a) { return a.type == type; });
  templ.push_back({type, std::move(value)});
}
}  // namespace

bool isServedMechanism(CK_MECHANISM_TYPE type) noexcept {
  return contains(kRsaSigning, type) || contains(kEcSigning, type) || contains(kDigests, type) ||
         contains(kKeyGeneration, type);
}

CK_KEY_TYPE keyTypeFor(CK_MECHANISM_TYPE type) noexcept {
  if (!contains(kRsaSigning, type) && !contains(kEcSigning, type)) {
    return ~CK_KEY_TYPE{0};
  }
  return requiredKeyType(type).value_or(~CK_KEY_TYPE{0});
}

bool isServedMechanismParameters(const token::Mechanism& mechanism) noexcept {
  return !(mechanism.params.kind == token::MechanismParameters::Kind::Oaep && !mechanism.params.data.empty());
}

bool isKeyGenerationMechanism(CK_MECHANISM_TYPE type) noexcept {
  return contains(kKeyGeneration, type);
}

void enforcePrivateKeyTemplate(token::AttributeList& templ) {
  setAttribute(templ, CKA_SENSITIVE, boolBytes(true));
  setAttribute(templ, CKA_EXTRACTABLE, boolBytes(false));
  setAttribute(templ, CKA_PRIVATE, boolBytes(true));
}

void checkTemplate(const token::AttributeList& templ) {
  if (templ.size() > wire::kMaxTemplateAttributes) {
    fail(CKR_TEMPLATE_INCONSISTENT,
         "template has more than " + std::to_string(wire::kMaxTemplateAttributes) + " attributes");
  }
  std::vector<CK_ATTRIBUTE_TYPE> types;
  types.reserve(templ.size());
  for (const auto& attribute : templ) {
    types.push_back(attribute.type);
  }
  std::sort(types.begin(), types.end());
  if (std::adjacent_find(types.begin(), types.end()) != types.end()) {
    fail(CKR_TEMPLATE_INCONSISTENT, "template names an attribute type twice");
  }
}

std::optional<bool> templateBool(const token::AttributeList& templ, CK_ATTRIBUTE_TYPE type) {
  for (const auto& attribute : templ) {
    if (attribute.type == type) {
      bool value = false;
      if (!readBool(attribute.value, value)) {
        fail(CKR_ATTRIBUTE_VALUE_INVALID, "attribute " + std::to_string(type) + " is not a CK_BBOOL");
      }
      return value;
    }
  }
  return std::nullopt;
}

std::optional<CK_ULONG> templateUlong(const token::AttributeList& templ, CK_ATTRIBUTE_TYPE type) {
  for (const auto& attribute : templ) {
    if (attribute.type == type) {
      CK_ULONG value = 0;
      if (!readUlong(attribute.value, value)) {
        fail(CKR_ATTRIBUTE_VALUE_INVALID, "attribute " + std::to_string(type) + " is not a CK_ULONG");
      }
      return value;
    }
  }
  return std::nullopt;
}

void refuseLooserProtection(const token::AttributeList& templ, CK_OBJECT_CLASS objectClass, bool isPrivate) {
  if (templateBool(templ, CKA_SENSITIVE) == false || templateBool(templ, CKA_EXTRACTABLE) == true) {
    fail(CKR_ATTRIBUTE_READ_ONLY, "key protection cannot be loosened");
  }
  if ((isPrivate || isKeyClass(objectClass)) && templateBool(templ, CKA_PRIVATE) == false) {
    fail(CKR_ATTRIBUTE_READ_ONLY, "a private object cannot be made public");
  }
}

bool readUlong(const token::Bytes& value, CK_ULONG& out) noexcept {
  if (value.size() != sizeof(CK_ULONG)) {
    return false;
  }
  std::memcpy(&out, value.data(), sizeof out);
  return true;
}

bool readBool(const token::Bytes& value, bool& out) noexcept {
  if (value.size() != sizeof(CK_BBOOL)) {
    return false;
  }
  out = value[0] != CK_FALSE;
  return true;
}

token::Bytes ulongBytes(CK_ULONG value) {
  token::Bytes bytes(sizeof value);
  std::memcpy(bytes.data(), &value, sizeof value);
  return bytes;
}

token::Bytes boolBytes(bool value) {
  return {static_cast<std::uint8_t>(value ? CK_TRUE : CK_FALSE)};
}

}  // namespace dojang::daemon
