// The PKCS#11 vocabulary used everywhere in dojang: p11-kit's 2.40 header plus the few
// PKCS#11 3.0 interface definitions that header predates.
#pragma once

#include <p11-kit/pkcs11.h>

extern "C" {

#ifndef CKF_INTERFACE_FORK_SAFE
// PKCS#11 3.0, section 3.6: a named function table a module offers through C_GetInterface.
struct CK_INTERFACE {
  CK_UTF8CHAR* pInterfaceName;
  void* pFunctionList;
  CK_FLAGS flags;
};
using CK_INTERFACE_PTR = CK_INTERFACE*;
using CK_INTERFACE_PTR_PTR = CK_INTERFACE**;
constexpr CK_FLAGS CKF_INTERFACE_FORK_SAFE = 0x00000001UL;
#endif

using CK_C_GetInterfaceList = CK_RV (*)(CK_INTERFACE_PTR, CK_ULONG_PTR);
using CK_C_GetInterface = CK_RV (*)(CK_UTF8CHAR_PTR, CK_VERSION_PTR, CK_INTERFACE_PTR_PTR, CK_FLAGS);
}

namespace dojang {
// Name of the private interface dojang-pkcs11.so offers so that dojangd can recognise (and refuse
// to load) its own front end.
inline constexpr const char* kSelfInterfaceName = "Dojang Front End";
}  // namespace dojang
