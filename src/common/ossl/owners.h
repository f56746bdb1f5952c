// Move-only owners for every OpenSSL object dojang touches (dojang-ca, src/pki, the tests): one
// alias per type, so that no raw pointer returned by OpenSSL ever outlives the statement that
// received it.
#pragma once

#include <openssl/bio.h>
#include <openssl/cmp.h>
#include <openssl/crmf.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>

namespace dojang {

template <auto FreeFunction>
struct OpensslDeleter final {
  template <class T>
  void operator()(T* object) const noexcept {
    FreeFunction(object);
  }
};

template <class T, auto FreeFunction>
using OpensslPtr = std::unique_ptr<T, OpensslDeleter<FreeFunction>>;

using BioPtr = OpensslPtr<BIO, BIO_free_all>;
using PkeyPtr = OpensslPtr<EVP_PKEY, EVP_PKEY_free>;
using PkeyCtxPtr = OpensslPtr<EVP_PKEY_CTX, EVP_PKEY_CTX_free>;
using X509Ptr = OpensslPtr<X509, X509_free>;
using X509NamePtr = OpensslPtr<X509_NAME, X509_NAME_free>;
using X509CrlPtr = OpensslPtr<X509_CRL, X509_CRL_free>;
using X509RevokedPtr = OpensslPtr<X509_REVOKED, X509_REVOKED_free>;
using X509ReqPtr = OpensslPtr<X509_REQ, X509_REQ_free>;
using X509StorePtr = OpensslPtr<X509_STORE, X509_STORE_free>;
using X509ExtensionPtr = OpensslPtr<X509_EXTENSION, X509_EXTENSION_free>;
using CertificatePoliciesPtr = OpensslPtr<CERTIFICATEPOLICIES, CERTIFICATEPOLICIES_free>;
using CrlDistPointsPtr = OpensslPtr<CRL_DIST_POINTS, CRL_DIST_POINTS_free>;
using Asn1IntegerPtr = OpensslPtr<ASN1_INTEGER, ASN1_INTEGER_free>;
using Asn1ObjectPtr = OpensslPtr<ASN1_OBJECT, ASN1_OBJECT_free>;
using Asn1TimePtr = OpensslPtr<ASN1_TIME, ASN1_TIME_free>;
using BignumPtr = OpensslPtr<BIGNUM, BN_free>;
using MdCtxPtr = OpensslPtr<EVP_MD_CTX, EVP_MD_CTX_free>;
using CmpMsgPtr = OpensslPtr<OSSL_CMP_MSG, OSSL_CMP_MSG_free>;
using CmpCtxPtr = OpensslPtr<OSSL_CMP_CTX, OSSL_CMP_CTX_free>;
using CmpSrvCtxPtr = OpensslPtr<OSSL_CMP_SRV_CTX, OSSL_CMP_SRV_CTX_free>;
using CmpPkisiPtr = OpensslPtr<OSSL_CMP_PKISI, OSSL_CMP_PKISI_free>;

// Stack helpers are macros; these are the functions they stand for. The owner drops the
// certificates' references too.
inline void freeX509Stack(STACK_OF(X509)* stack) noexcept { sk_X509_pop_free(stack, X509_free); }
using X509StackPtr = OpensslPtr<STACK_OF(X509), freeX509Stack>;

// OPENSSL_free is a macro; this is the function it stands for.
inline void freeOpensslMemory(void* memory) noexcept { OPENSSL_free(memory); }
using OpensslStringPtr = OpensslPtr<char, freeOpensslMemory>;
using OpensslBytesPtr = OpensslPtr<unsigned char, freeOpensslMemory>;

}  // namespace dojang
