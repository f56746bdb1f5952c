#include "src/renewal/token/renewal_token.h"

#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>

#include <utility>

#include "src/common/cryptoki/hex_text.h"
#include "src/common/cryptoki/padded_text.h"
#include "src/common/cryptoki/two_call_list.h"
#include "src/common/errors/error.h"
#include "src/common/errors/foreign_errors.h"
#include "src/common/ossl/owners.h"

namespace dojang::renewal {

namespace {

CK_BBOOL kTrue = CK_TRUE;
CK_BBOOL kFalse = CK_FALSE;

template <class T>
CK_ATTRIBUTE attributeOf(CK_ATTRIBUTE_TYPE type, T& value) {
  return {type, &value, sizeof value};
}

CK_ATTRIBUTE bytesAttribute(CK_ATTRIBUTE_TYPE type, const Bytes& value) {
  // PKCS#11 takes a non-const pointer; the module only reads templates.
  return {type, const_cast<std::uint8_t*>(value.data()), static_cast<CK_ULONG>(value.size())};
}

CK_ATTRIBUTE textAttribute(CK_ATTRIBUTE_TYPE type, const std::string& value) {
  return {type, const_cast<char*>(value.data()), static_cast<CK_ULONG>(value.size())};
}

// DER of the curve's OID, as CKA_EC_PARAMS wants it.
Bytes curveParameters(const std::string& curve) {
  const int nid = OBJ_sn2nid(curve.c_str());
  if (nid == NID_undef) {
    fail(CKR_ARGUMENTS_BAD, "unknown EC curve " + curve);
  }
  const Asn1ObjectPtr object(checkOpenssl(OBJ_nid2obj(nid), "OBJ_nid2obj"));
  const int length = i2d_ASN1_OBJECT(object.get(), nullptr);
  Bytes der(static_cast<std::size_t>(length > 0 ? length : 0));
  unsigned char* out = der.data();
  if (length <= 0 || i2d_ASN1_OBJECT(object.get(), &out) != length) {
    throwOpenssl("i2d_ASN1_OBJECT");
  }
  return der;
}

template <class Encode, class Object>
Bytes derOf(Encode encode, Object* object, const char* what) {
  const int length = encode(object, nullptr);
  if (length <= 0) {
    throwOpenssl(what);
  }
  Bytes der(static_cast<std::size_t>(length));
  unsigned char* out = der.data();
  encode(object, &out);
  return der;
}

}  // namespace

X509Ptr parseCertificate(const Bytes& der) {
  const unsigned char* in = der.data();
  X509Ptr certificate(d2i_X509(nullptr, &in, static_cast<long>(der.size())));
  if (!certificate) {
    throwOpenssl("d2i_X509: not a certificate", ErrorKind::BadInput);
  }
  return certificate;
}

std::string KeySpec::name() const {
  if (kind == Kind::Rsa) {
    return "rsa-" + std::to_string(rsaBits);
  }
  if (curve == "prime256v1") {
    return "ec-p256";
  }
  if (curve == "secp384r1") {
    return "ec-p384";
  }
  return "ec-" + curve;
}

std::optional<KeySpec> KeySpec::fromName(const std::string& name) {
  if (name == "ec-p256" || name == "ec") {
    return KeySpec{Kind::Ec, "prime256v1", 0};
  }
  if (name == "ec-p384") {
    return KeySpec{Kind::Ec, "secp384r1", 0};
  }
  for (const unsigned bits : {2048U, 3072U, 4096U}) {
    if (name == "rsa-" + std::to_string(bits) || (name == "rsa" && bits == 2048)) {
      return KeySpec{Kind::Rsa, "", bits};
    }
  }
  return std::nullopt;
}

KeySpec keySpecOfCertificate(const Bytes& der) {
  const auto certificate = parseCertificate(der);
  EVP_PKEY* key = checkOpenssl(X509_get0_pubkey(certificate.get()), "X509_get0_pubkey");
  if (EVP_PKEY_is_a(key, "RSA") == 1) {
    return KeySpec{KeySpec::Kind::Rsa, "", static_cast<unsigned>(EVP_PKEY_get_bits(key))};
  }
  if (EVP_PKEY_is_a(key, "EC") == 1) {
    char group[80] = {};
    checkOpensslStatus(EVP_PKEY_get_group_name(key, group, sizeof group, nullptr), "EVP_PKEY_get_group_name");
    return KeySpec{KeySpec::Kind::Ec, group, 0};
  }
  fail(CKR_KEY_TYPE_INCONSISTENT, "the certificate's key is neither RSA nor EC; dojang renews only those");
}

std::vector<TokenIdentity> tokensOf(CK_FUNCTION_LIST& functions) {
  std::vector<CK_SLOT_ID> slots;
  checkCkRv(
      readTwoCallList(slots, [&](CK_SLOT_ID* list,
                                 CK_ULONG* count) { return functions.C_GetSlotList(CK_TRUE, list, count); }),
      "C_GetSlotList");
  std::vector<TokenIdentity> tokens;
  for (const auto slot : slots) {
    CK_TOKEN_INFO info{};
    if (functions.C_GetTokenInfo(slot, &info) != CKR_OK) {
      continue;  // went away since the list was made
    }
    tokens.push_back({slot, paddedText(info.label), paddedText(info.serialNumber)});
  }
  return tokens;
}

RenewalToken::RenewalToken(CK_FUNCTION_LIST& functions, TokenIdentity token)
    : m_functions(functions), m_token(std::move(token)) {
  checkCkRv(m_functions.C_OpenSession(m_token.slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr,
                                      &m_session),
            "C_OpenSession");
}

RenewalToken::~RenewalToken() {
  if (m_session != CK_INVALID_HANDLE) {
    (void)m_functions.C_CloseSession(m_session);
  }
}

bool RenewalToken::loggedIn() const {
  CK_SESSION_INFO info{};
  checkCkRv(m_functions.C_GetSessionInfo(m_session, &info), "C_GetSessionInfo");
  return info.state == CKS_RW_USER_FUNCTIONS || info.state == CKS_RO_USER_FUNCTIONS;
}

void RenewalToken::login(const SecureBytes& pin) {
  // No PIN: the protected authentication path, where dojangd's prompt (or a PIN pad) asks.
  const CK_RV rv = pin.empty() ? m_functions.C_Login(m_session, CKU_USER, nullptr, 0)
                               : m_functions.C_Login(m_session, CKU_USER, const_cast<CK_UTF8CHAR*>(pin.data()),
                                                     static_cast<CK_ULONG>(pin.size()));
  if (rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN) {
    return;
  }
  if (rv == CKR_PIN_INCORRECT) {
    CK_TOKEN_INFO info{};
    std::string tries = "the token does not say how many tries are left";
    if (m_functions.C_GetTokenInfo(m_token.slot, &info) == CKR_OK) {
      if ((info.flags & CKF_USER_PIN_LOCKED) != 0) {
        tries = "the PIN is now locked";
      } else if ((info.flags & CKF_USER_PIN_FINAL_TRY) != 0) {
        tries = "one try is left before the PIN locks";
      } else if ((info.flags & CKF_USER_PIN_COUNT_LOW) != 0) {
        tries = "few tries are left before the PIN locks";
      }
    }
    throw Error(CKR_PIN_INCORRECT, ErrorKind::PinIncorrect,
                "wrong PIN for token \"" + m_token.label + "\" (" + tries + "); not retried");
  }
  throwCkRv(rv, "C_Login");
}

std::vector<CK_OBJECT_HANDLE> RenewalToken::find(std::vector<CK_ATTRIBUTE> templ) const {
  checkCkRv(m_functions.C_FindObjectsInit(m_session, templ.data(), static_cast<CK_ULONG>(templ.size())),
            "C_FindObjectsInit");
  std::vector<CK_OBJECT_HANDLE> found;
  CK_OBJECT_HANDLE batch[64];
  CK_RV rv = CKR_OK;
  for (;;) {
    CK_ULONG count = 0;
    rv = m_functions.C_FindObjects(m_session, batch, 64, &count);
    if (rv != CKR_OK || count == 0) {
      break;
    }
    found.insert(found.end(), batch, batch + count);
  }
  (void)m_functions.C_FindObjectsFinal(m_session);
  checkCkRv(rv, "C_FindObjects");
  return found;
}

std::optional<Bytes> RenewalToken::attribute(CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type) const {
  CK_ATTRIBUTE query{type, nullptr, 0};
  if (m_functions.C_GetAttributeValue(m_session, object, &query, 1) != CKR_OK ||
      query.ulValueLen == CK_UNAVAILABLE_INFORMATION) {
    return std::nullopt;
  }
  Bytes value(query.ulValueLen);
  query.pValue = value.data();
  checkCkRv(m_functions.C_GetAttributeValue(m_session, object, &query, 1), "C_GetAttributeValue");
  value.resize(query.ulValueLen);
  return value;
}

std::optional<bool> RenewalToken::boolAttribute(CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type) const {
  const auto value = attribute(object, type);
  if (!value || value->size() != sizeof(CK_BBOOL)) {
    return std::nullopt;
  }
  return (*value)[0] == CK_TRUE;
}

std::vector<TokenCertificate> RenewalToken::certificates() const {
  CK_OBJECT_CLASS certificateClass = CKO_CERTIFICATE;
  std::vector<TokenCertificate> result;
  for (const auto handle : find({attributeOf(CKA_CLASS, certificateClass)})) {
    auto der = attribute(handle, CKA_VALUE);
    if (!der || der->empty()) {
      continue;
    }
    const auto label = attribute(handle, CKA_LABEL).value_or(Bytes{});
    result.push_back({handle, std::move(*der), attribute(handle, CKA_ID).value_or(Bytes{}),
                      std::string(label.begin(), label.end())});
  }
  return result;
}

std::optional<CK_OBJECT_HANDLE> RenewalToken::findById(CK_OBJECT_CLASS objectClass, const Bytes& id) const {
  const auto found = find({attributeOf(CKA_CLASS, objectClass), bytesAttribute(CKA_ID, id)});
  if (found.empty()) {
    return std::nullopt;
  }
  return found.front();
}

std::vector<CK_OBJECT_HANDLE> RenewalToken::allWithId(const Bytes& id) const {
  return find({bytesAttribute(CKA_ID, id)});
}

RenewalToken::GeneratedPair RenewalToken::generateKeyPair(const KeySpec& spec, const Bytes& id,
                                                          const std::string& label) {
  std::vector<CK_ATTRIBUTE> publicTemplate = {attributeOf(CKA_TOKEN, kTrue), attributeOf(CKA_PRIVATE, kFalse),
                                              attributeOf(CKA_VERIFY, kTrue), bytesAttribute(CKA_ID, id),
                                              textAttribute(CKA_LABEL, label)};
  std::vector<CK_ATTRIBUTE> privateTemplate = {
      attributeOf(CKA_TOKEN, kTrue),     attributeOf(CKA_PRIVATE, kTrue),
      attributeOf(CKA_SENSITIVE, kTrue), attributeOf(CKA_EXTRACTABLE, kFalse),
      attributeOf(CKA_SIGN, kTrue),      bytesAttribute(CKA_ID, id),
      textAttribute(CKA_LABEL, label)};
  CK_MECHANISM mechanism{CKM_EC_KEY_PAIR_GEN, nullptr, 0};
  Bytes curve;
  CK_ULONG modulusBits = spec.rsaBits;
  Bytes publicExponent = {0x01, 0x00, 0x01};
  if (spec.kind == KeySpec::Kind::Ec) {
    curve = curveParameters(spec.curve);
    publicTemplate.push_back(bytesAttribute(CKA_EC_PARAMS, curve));
  } else {
    mechanism.mechanism = CKM_RSA_PKCS_KEY_PAIR_GEN;
    publicTemplate.push_back(attributeOf(CKA_MODULUS_BITS, modulusBits));
    publicTemplate.push_back(bytesAttribute(CKA_PUBLIC_EXPONENT, publicExponent));
  }
  GeneratedPair pair;
  checkCkRv(m_functions.C_GenerateKeyPair(
                m_session, &mechanism, publicTemplate.data(), static_cast<CK_ULONG>(publicTemplate.size()),
                privateTemplate.data(), static_cast<CK_ULONG>(privateTemplate.size()), &pair.publicKey,
                &pair.privateKey),
            "C_GenerateKeyPair");
  return pair;
}

CK_OBJECT_HANDLE RenewalToken::storeCertificate(const Bytes& der, const Bytes& id, const std::string& label) {
  const auto certificate = parseCertificate(der);
  const Bytes subject = derOf(i2d_X509_NAME, X509_get_subject_name(certificate.get()), "i2d_X509_NAME");
  const Bytes issuer = derOf(i2d_X509_NAME, X509_get_issuer_name(certificate.get()), "i2d_X509_NAME");
  const Bytes serial = derOf(i2d_ASN1_INTEGER, X509_get0_serialNumber(certificate.get()), "i2d_ASN1_INTEGER");
  CK_OBJECT_CLASS certificateClass = CKO_CERTIFICATE;
  CK_CERTIFICATE_TYPE x509 = CKC_X_509;
  std::vector<CK_ATTRIBUTE> templ = {attributeOf(CKA_CLASS, certificateClass),
                                     attributeOf(CKA_CERTIFICATE_TYPE, x509),
                                     attributeOf(CKA_TOKEN, kTrue),
                                     attributeOf(CKA_PRIVATE, kFalse),
                                     textAttribute(CKA_LABEL, label),
                                     bytesAttribute(CKA_ID, id),
                                     bytesAttribute(CKA_SUBJECT, subject),
                                     bytesAttribute(CKA_ISSUER, issuer),
                                     bytesAttribute(CKA_SERIAL_NUMBER, serial),
                                     bytesAttribute(CKA_VALUE, der)};
  CK_OBJECT_HANDLE object = CK_INVALID_HANDLE;
  checkCkRv(m_functions.C_CreateObject(m_session, templ.data(), static_cast<CK_ULONG>(templ.size()), &object),
            "C_CreateObject (certificate)");
  return object;
}

void RenewalToken::relabel(CK_OBJECT_HANDLE object, const std::string& label) {
  CK_ATTRIBUTE templ = textAttribute(CKA_LABEL, label);
  checkCkRv(m_functions.C_SetAttributeValue(m_session, object, &templ, 1), "C_SetAttributeValue (CKA_LABEL)");
}

void RenewalToken::destroy(CK_OBJECT_HANDLE object) {
  checkCkRv(m_functions.C_DestroyObject(m_session, object), "C_DestroyObject");
}

}  // namespace dojang::renewal
