// A few PKCS#11 calls tests make on a loaded module, each checked with Catch2's REQUIRE.
#pragma once

#include <vector>

#include "src/common/cryptoki/cryptoki.h"

namespace dojang::test {

// Every object of `objectClass` whose CKA_ID is the one byte `id`.
[[nodiscard]] std::vector<CK_OBJECT_HANDLE> findWithId(CK_FUNCTION_LIST& p11, CK_SESSION_HANDLE session,
                                                       CK_OBJECT_CLASS objectClass, CK_BYTE id);
// One raw ECDSA signature (CKM_ECDSA over 32 bytes) with `key`: the call's CK_RV, or
// CKR_GENERAL_ERROR when it says OK but the signature is not 64 bytes (P-256 r||s).
[[nodiscard]] CK_RV signP256Once(CK_FUNCTION_LIST& p11, CK_SESSION_HANDLE session, CK_OBJECT_HANDLE key);

}  // namespace dojang::test
