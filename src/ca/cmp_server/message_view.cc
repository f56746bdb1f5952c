#include "src/ca/cmp_server/message_view.h"

#include <openssl/asn1t.h>
#include <openssl/objects.h>
#include <openssl/x509.h>

#include <memory>

#include "src/common/errors/foreign_errors.h"

namespace dojang::ca {
namespace {

// Each view mirrors the ASN.1 module of RFC 9810 (PKIHeader, InfoTypeAndValue) or RFC 4211
// (CertTemplate, OptionalValidity) field by field, so OpenSSL's decoder accepts exactly what it
// accepted when it parsed the request.
struct DojangItavView {
  ASN1_OBJECT* infoType;
  ASN1_TYPE* infoValue;
};
DECLARE_ASN1_ITEM(DojangItavView)
ASN1_SEQUENCE(DojangItavView) = {
    ASN1_SIMPLE(DojangItavView, infoType, ASN1_OBJECT),
    ASN1_OPT(DojangItavView, infoValue, ASN1_ANY),
} ASN1_SEQUENCE_END(DojangItavView)

struct DojangPkiHeaderView {
  ASN1_INTEGER* pvno;
  GENERAL_NAME* sender;
  GENERAL_NAME* recipient;
  ASN1_GENERALIZEDTIME* messageTime;
  X509_ALGOR* protectionAlg;
  ASN1_OCTET_STRING* senderKID;
  ASN1_OCTET_STRING* recipKID;
  ASN1_OCTET_STRING* transactionID;
  ASN1_OCTET_STRING* senderNonce;
  ASN1_OCTET_STRING* recipNonce;
  OPENSSL_STACK* freeText;
  OPENSSL_STACK* generalInfo;
};
DECLARE_ASN1_ITEM(DojangPkiHeaderView)
ASN1_SEQUENCE(DojangPkiHeaderView) = {
    ASN1_SIMPLE(DojangPkiHeaderView, pvno, ASN1_INTEGER),
    ASN1_SIMPLE(DojangPkiHeaderView, sender, GENERAL_NAME),
    ASN1_SIMPLE(DojangPkiHeaderView, recipient, GENERAL_NAME),
    ASN1_EXP_OPT(DojangPkiHeaderView, messageTime, ASN1_GENERALIZEDTIME, 0),
    ASN1_EXP_OPT(DojangPkiHeaderView, protectionAlg, X509_ALGOR, 1),
    ASN1_EXP_OPT(DojangPkiHeaderView, senderKID, ASN1_OCTET_STRING, 2),
    ASN1_EXP_OPT(DojangPkiHeaderView, recipKID, ASN1_OCTET_STRING, 3),
    ASN1_EXP_OPT(DojangPkiHeaderView, transactionID, ASN1_OCTET_STRING, 4),
    ASN1_EXP_OPT(DojangPkiHeaderView, senderNonce, ASN1_OCTET_STRING, 5),
    ASN1_EXP_OPT(DojangPkiHeaderView, recipNonce, ASN1_OCTET_STRING, 6),
    ASN1_EXP_SEQUENCE_OF_OPT(DojangPkiHeaderView, freeText, ASN1_UTF8STRING, 7),
    ASN1_EXP_SEQUENCE_OF_OPT(DojangPkiHeaderView, generalInfo, DojangItavView, 8),
} ASN1_SEQUENCE_END(DojangPkiHeaderView)

struct DojangOptionalValidityView {
  ASN1_TIME* notBefore;
  ASN1_TIME* notAfter;
};
DECLARE_ASN1_ITEM(DojangOptionalValidityView)
ASN1_SEQUENCE(DojangOptionalValidityView) = {
    ASN1_EXP_OPT(DojangOptionalValidityView, notBefore, ASN1_TIME, 0),
    ASN1_EXP_OPT(DojangOptionalValidityView, notAfter, ASN1_TIME, 1),
} ASN1_SEQUENCE_END(DojangOptionalValidityView)

struct DojangCertTemplateView {
  ASN1_INTEGER* version;
  ASN1_INTEGER* serialNumber;
  X509_ALGOR* signingAlg;
  X509_NAME* issuer;
  DojangOptionalValidityView* validity;
  X509_NAME* subject;
  X509_PUBKEY* publicKey;
  ASN1_BIT_STRING* issuerUID;
  ASN1_BIT_STRING* subjectUID;
  OPENSSL_STACK* extensions;
};
DECLARE_ASN1_ITEM(DojangCertTemplateView)
ASN1_SEQUENCE(DojangCertTemplateView) = {
    ASN1_IMP_OPT(DojangCertTemplateView, version, ASN1_INTEGER, 0),
    ASN1_IMP_OPT(DojangCertTemplateView, serialNumber, ASN1_INTEGER, 1),
    ASN1_IMP_OPT(DojangCertTemplateView, signingAlg, X509_ALGOR, 2),
    ASN1_EXP_OPT(DojangCertTemplateView, issuer, X509_NAME, 3),
    ASN1_IMP_OPT(DojangCertTemplateView, validity, DojangOptionalValidityView, 4),
    ASN1_EXP_OPT(DojangCertTemplateView, subject, X509_NAME, 5),
    ASN1_IMP_OPT(DojangCertTemplateView, publicKey, X509_PUBKEY, 6),
    ASN1_IMP_OPT(DojangCertTemplateView, issuerUID, ASN1_BIT_STRING, 7),
    ASN1_IMP_OPT(DojangCertTemplateView, subjectUID, ASN1_BIT_STRING, 8),
    ASN1_IMP_SEQUENCE_OF_OPT(DojangCertTemplateView, extensions, X509_EXTENSION, 9),
} ASN1_SEQUENCE_END(DojangCertTemplateView)

// Owns a decoded view and frees it with the item that decoded it.
template <class View>
struct ViewDeleter final {
  const ASN1_ITEM* item;
  void operator()(View* view) const noexcept {
    ASN1_item_free(reinterpret_cast<ASN1_VALUE*>(view), item);
  }
};
template <class View>
using ViewPtr = std::unique_ptr<View, ViewDeleter<View>>;

template <class View>
ViewPtr<View> decodeView(const unsigned char* der, int length, const ASN1_ITEM* item,
                         std::string_view what) {
  const unsigned char* cursor = der;
  ASN1_VALUE* value = ASN1_item_d2i(nullptr, &cursor, length, item);
  if (value == nullptr) {
    throwOpenssl(what, ErrorKind::BadInput);
  }
  return ViewPtr<View>(reinterpret_cast<View*>(value), ViewDeleter<View>{item});
}

std::string objectToDotted(const ASN1_OBJECT* object) {
  char text[128];
  int length = OBJ_obj2txt(text, sizeof text, object, 1);
  if (length <= 0 || static_cast<size_t>(length) >= sizeof text) {
    return {};
  }
  return std::string(text, static_cast<size_t>(length));
}

}  // namespace

const GeneralInfoEntry* RequestHeader::findGeneralInfo(const std::string& oid) const {
  for (const GeneralInfoEntry& entry : generalInfo) {
    if (entry.oid == oid) {
      return &entry;
    }
  }
  return nullptr;
}

RequestHeader readRequestHeader(const OSSL_CMP_MSG& request) {
  OSSL_CMP_PKIHEADER* header =
      checkOpenssl(OSSL_CMP_MSG_get0_header(&request), "CMP message without header");
  unsigned char* der = nullptr;
  int length = i2d_OSSL_CMP_PKIHEADER(header, &der);
  if (length <= 0) {
    throwOpenssl("re-encoding the PKIHeader", ErrorKind::BadInput);
  }
  OpensslStringPtr derOwner(reinterpret_cast<char*>(der));
  auto view = decodeView<DojangPkiHeaderView>(der, length, ASN1_ITEM_rptr(DojangPkiHeaderView),
                                              "reading the PKIHeader");

  RequestHeader result;
  if (view->protectionAlg != nullptr) {
    const ASN1_OBJECT* algorithm = nullptr;
    X509_ALGOR_get0(&algorithm, nullptr, nullptr, view->protectionAlg);
    result.macProtected = OBJ_obj2nid(algorithm) == NID_id_PasswordBasedMAC;
    result.signatureProtected = !result.macProtected;
  }
  if (view->senderKID != nullptr) {
    result.senderKid = std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(view->senderKID)),
                                   static_cast<size_t>(ASN1_STRING_length(view->senderKID)));
  }
  for (int index = 0; index < OPENSSL_sk_num(view->generalInfo); ++index) {
    const auto* itav = static_cast<const DojangItavView*>(OPENSSL_sk_value(view->generalInfo, index));
    GeneralInfoEntry entry;
    entry.oid = objectToDotted(itav->infoType);
    entry.hasValue = itav->infoValue != nullptr;
    if (itav->infoValue != nullptr && ASN1_TYPE_get(itav->infoValue) == V_ASN1_INTEGER) {
      int64_t value = 0;
      if (ASN1_INTEGER_get_int64(&value, itav->infoValue->value.integer) == 1) {
        entry.integer = value;
      }
    }
    result.generalInfo.push_back(std::move(entry));
  }
  return result;
}

PkeyPtr requestedPublicKey(const OSSL_CRMF_MSG& certRequest) {
  OSSL_CRMF_CERTTEMPLATE* certTemplate = OSSL_CRMF_MSG_get0_tmpl(&certRequest);
  if (certTemplate == nullptr) {
    return nullptr;
  }
  unsigned char* der = nullptr;
  int length = i2d_OSSL_CRMF_CERTTEMPLATE(certTemplate, &der);
  if (length <= 0) {
    throwOpenssl("re-encoding the certificate template", ErrorKind::BadInput);
  }
  OpensslStringPtr derOwner(reinterpret_cast<char*>(der));
  auto view = decodeView<DojangCertTemplateView>(der, length, ASN1_ITEM_rptr(DojangCertTemplateView),
                                                 "reading the certificate template");
  if (view->publicKey == nullptr) {
    return nullptr;
  }
  return PkeyPtr(X509_PUBKEY_get(view->publicKey));  // X509_PUBKEY_get takes a reference
}

}  // namespace dojang::ca
