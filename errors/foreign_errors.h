// Translators for the non-PKCS#11 failure sources. Kept apart from error.h so that the
// dependency-light PKCS#11 module never pulls in OpenSSL or pcsc-lite.
#pragma once

#include <string_view>

#include "error.h"

namespace dojang {

// PC/SC: throws unless rv is SCARD_S_SUCCESS; removal and timeouts get their own kinds.
void checkPcsc(long rv, std::string_view call,
               CallSite where = CallSite::current());

// OpenSSL: drains the thread's error queue into the message and throws.
[[noreturn]] void throwOpenssl(std::string_view what, ErrorKind kind = ErrorKind::Fatal,
                               CallSite where = CallSite::current());

// Returns ptr, or throws with the OpenSSL error queue when it is null.
template <class T>
T* checkOpenssl(T* ptr, std::string_view what,
                CallSite where = CallSite::current()) {
  if (ptr == nullptr) {
    throwOpenssl(what, ErrorKind::Fatal, where);
  }
  return ptr;
}
// For OpenSSL calls that return 1 on success.
void checkOpensslStatus(int status, std::string_view what,
                        CallSite where = CallSite::current());

}  // namespace dojang
