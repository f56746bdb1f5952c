#include "tests/support/p11_calls.h"

#include <array>
#include <catch2/catch.hpp>

namespace dojang::test {

std::vector<CK_OBJECT_HANDLE> findWithId(CK_FUNCTION_LIST& p11, CK_SESSION_HANDLE session,
                                         CK_OBJECT_CLASS objectClass, CK_BYTE id) {
  std::array<CK_ATTRIBUTE, 2> templ{{{CKA_CLASS, &objectClass, sizeof objectClass}, {CKA_ID, &id, 1}}};
  REQUIRE(p11.C_FindObjectsInit(session, templ.data(), templ.size()) == CKR_OK);
  std::array<CK_OBJECT_HANDLE, 16> found{};
  CK_ULONG count = 0;
  REQUIRE(p11.C_FindObjects(session, found.data(), found.size(), &count) == CKR_OK);
  REQUIRE(p11.C_FindObjectsFinal(session) == CKR_OK);
  return {found.begin(), found.begin() + static_cast<std::ptrdiff_t>(count)};
}

CK_RV signP256Once(CK_FUNCTION_LIST& p11, CK_SESSION_HANDLE session, CK_OBJECT_HANDLE key) {
  CK_MECHANISM mechanism{CKM_ECDSA, nullptr, 0};
  if (const CK_RV rv = p11.C_SignInit(session, &mechanism, key); rv != CKR_OK) {
    return rv;
  }
  std::array<CK_BYTE, 32> hash{};
  std::array<CK_BYTE, 132> signature{};
  CK_ULONG length = signature.size();
  const CK_RV rv = p11.C_Sign(session, hash.data(), hash.size(), signature.data(), &length);
  return rv == CKR_OK && length != 64 ? CKR_GENERAL_ERROR : rv;
}

}  // namespace dojang::test
