// What dojangd enforces whatever a client or a backend says (src/daemon/policy.h).
#include <catch2/catch.hpp>

#include "src/daemon/policy.h"

namespace core = dojang::daemon;
namespace token = dojang::token;

namespace {

std::optional<token::Bytes> valueOf(const token::AttributeList& templ, CK_ATTRIBUTE_TYPE type) {
  std::optional<token::Bytes> found;
  int count = 0;
  for (const auto& attribute : templ) {
    if (attribute.type == type) {
      found = attribute.value;
      ++count;
    }
  }
  REQUIRE(count <= 1);  // never two copies of one attribute
  return found;
}

}  // namespace

TEST_CASE("served mechanisms are RSA and EC signing, digests and key generation", "[policy]") {
  for (CK_MECHANISM_TYPE served :
       {CKM_RSA_PKCS, CKM_RSA_PKCS_PSS, CKM_RSA_PKCS_OAEP, CKM_SHA256_RSA_PKCS, CKM_SHA512_RSA_PKCS,
        CKM_SHA256_RSA_PKCS_PSS, CKM_SHA1_RSA_PKCS, CKM_ECDSA, CKM_ECDSA_SHA256, CKM_ECDSA_SHA512, CKM_SHA_1,
        CKM_SHA256, CKM_SHA512, CKM_RSA_PKCS_KEY_PAIR_GEN, CKM_EC_KEY_PAIR_GEN}) {
    INFO("mechanism 0x" << std::hex << served);
    CHECK(core::isServedMechanism(served));
  }
  for (CK_MECHANISM_TYPE refused : {CKM_AES_CBC, CKM_AES_KEY_GEN, CKM_DES3_CBC, CKM_RSA_X_509, CKM_MD5,
                                    CKM_ECDH1_DERIVE, CKM_GENERIC_SECRET_KEY_GEN, CKM_VENDOR_DEFINED}) {
    INFO("mechanism 0x" << std::hex << refused);
    CHECK_FALSE(core::isServedMechanism(refused));
  }
}

TEST_CASE("key generation mechanisms", "[policy]") {
  CHECK(core::isKeyGenerationMechanism(CKM_RSA_PKCS_KEY_PAIR_GEN));
  CHECK(core::isKeyGenerationMechanism(CKM_EC_KEY_PAIR_GEN));
  CHECK_FALSE(core::isKeyGenerationMechanism(CKM_ECDSA));
  CHECK_FALSE(core::isKeyGenerationMechanism(CKM_AES_KEY_GEN));
}

TEST_CASE("keyTypeFor names the key type a mechanism needs", "[policy]") {
  for (CK_MECHANISM_TYPE rsa : {CKM_RSA_PKCS, CKM_RSA_PKCS_PSS, CKM_RSA_PKCS_OAEP, CKM_SHA256_RSA_PKCS,
                                CKM_SHA384_RSA_PKCS_PSS, CKM_SHA1_RSA_PKCS}) {
    CHECK(core::keyTypeFor(rsa) == CKK_RSA);
  }
  for (CK_MECHANISM_TYPE ec : {CKM_ECDSA, CKM_ECDSA_SHA1, CKM_ECDSA_SHA256, CKM_ECDSA_SHA384}) {
    CHECK(core::keyTypeFor(ec) == CKK_EC);
  }
  for (CK_MECHANISM_TYPE none : {CKM_SHA256, CKM_EC_KEY_PAIR_GEN, CKM_AES_CBC}) {
    CHECK(core::keyTypeFor(none) == ~CK_KEY_TYPE{0});
  }
}

TEST_CASE("secret attributes of private and secret keys are never revealed", "[policy]") {
  for (CK_ATTRIBUTE_TYPE secret : {CKA_VALUE, CKA_PRIVATE_EXPONENT, CKA_PRIME_1, CKA_PRIME_2, CKA_EXPONENT_1,
                                   CKA_EXPONENT_2, CKA_COEFFICIENT}) {
    CHECK(core::isSecretAttribute(CKO_PRIVATE_KEY, secret));
  }
  CHECK(core::isSecretAttribute(CKO_SECRET_KEY, CKA_VALUE));
  for (CK_ATTRIBUTE_TYPE open : {CKA_MODULUS, CKA_PUBLIC_EXPONENT, CKA_EC_PARAMS, CKA_LABEL, CKA_ID, CKA_SIGN,
                                 CKA_SENSITIVE}) {
    CHECK_FALSE(core::isSecretAttribute(CKO_PRIVATE_KEY, open));
  }
  // A certificate's or a public key's value is public.
  CHECK_FALSE(core::isSecretAttribute(CKO_CERTIFICATE, CKA_VALUE));
  CHECK_FALSE(core::isSecretAttribute(CKO_PUBLIC_KEY, CKA_VALUE));
  CHECK_FALSE(core::isSecretAttribute(CKO_DATA, CKA_VALUE));
  CHECK_FALSE(core::isSecretAttribute(CKO_PUBLIC_KEY, CKA_PRIVATE_EXPONENT));
}

TEST_CASE("enforcePrivateKeyTemplate overrides what the client asked for", "[policy]") {
  const token::Bytes yes = core::boolBytes(true);
  const token::Bytes no = core::boolBytes(false);

  SECTION("a client asking for an exportable, public key") {
    token::AttributeList templ{{CKA_SENSITIVE, no},
                               {CKA_EXTRACTABLE, yes},
                               {CKA_PRIVATE, no},
                               {CKA_LABEL, {'k'}},
                               {CKA_SIGN, yes}};
    core::enforcePrivateKeyTemplate(templ);
    CHECK(valueOf(templ, CKA_SENSITIVE) == yes);
    CHECK(valueOf(templ, CKA_EXTRACTABLE) == no);
    CHECK(valueOf(templ, CKA_PRIVATE) == yes);
    CHECK(valueOf(templ, CKA_LABEL) == token::Bytes{'k'});
    CHECK(valueOf(templ, CKA_SIGN) == yes);
  }
  SECTION("a template that says nothing") {
    token::AttributeList templ;
    core::enforcePrivateKeyTemplate(templ);
    CHECK(templ.size() == 3);
    CHECK(valueOf(templ, CKA_SENSITIVE) == yes);
    CHECK(valueOf(templ, CKA_EXTRACTABLE) == no);
    CHECK(valueOf(templ, CKA_PRIVATE) == yes);
  }
  SECTION("duplicates and odd encodings are replaced, not added to") {
    token::AttributeList templ{{CKA_EXTRACTABLE, yes},
                               {CKA_EXTRACTABLE, {0x02}},
                               {CKA_SENSITIVE, {}},
                               {CKA_PRIVATE, {0, 0, 0, 0, 0, 0, 0, 0}}};
    core::enforcePrivateKeyTemplate(templ);
    CHECK(templ.size() == 3);
    CHECK(valueOf(templ, CKA_SENSITIVE) == yes);
    CHECK(valueOf(templ, CKA_EXTRACTABLE) == no);
    CHECK(valueOf(templ, CKA_PRIVATE) == yes);
  }
}

TEST_CASE("OAEP with a label is refused, without one it is served", "[policy]") {
  token::Mechanism oaep;
  oaep.type = CKM_RSA_PKCS_OAEP;
  oaep.params.kind = token::MechanismParameters::Kind::Oaep;
  oaep.params.hashAlg = CKM_SHA256;
  oaep.params.mgf = CKG_MGF1_SHA256;
  oaep.params.sourceType = CKZ_DATA_SPECIFIED;
  CHECK(core::isServedMechanismParameters(oaep));
  oaep.params.data = {'l', 'a', 'b', 'e', 'l'};
  CHECK_FALSE(core::isServedMechanismParameters(oaep));

  token::Mechanism pss;
  pss.type = CKM_SHA256_RSA_PKCS_PSS;
  pss.params.kind = token::MechanismParameters::Kind::Pss;
  pss.params.saltLength = 32;
  CHECK(core::isServedMechanismParameters(pss));
  CHECK(core::isServedMechanismParameters(token::Mechanism{CKM_ECDSA, {}}));
}

TEST_CASE("attribute values in host layout", "[policy]") {
  CK_ULONG number = 0;
  CHECK(core::readUlong(core::ulongBytes(CKO_PRIVATE_KEY), number));
  CHECK(number == CKO_PRIVATE_KEY);
  CHECK_FALSE(core::readUlong(token::Bytes{1, 2, 3}, number));
  bool flag = false;
  CHECK(core::readBool(core::boolBytes(true), flag));
  CHECK(flag);
  CHECK(core::readBool(token::Bytes{0}, flag));
  CHECK_FALSE(flag);
  CHECK_FALSE(core::readBool(token::Bytes{}, flag));
  CHECK_FALSE(core::readBool(token::Bytes{1, 0}, flag));
}
