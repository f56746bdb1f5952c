#include "src/common/errors/foreign_errors.h"

#include <openssl/err.h>
#include <openssl/rand.h>
#include <winscard.h>

#include <algorithm>
#include <climits>
#include <string>

namespace dojang {

void checkPcsc(long rv, std::string_view call, CallSite where) {
  if (rv == SCARD_S_SUCCESS) {
    return;
  }
  std::string message = std::string(call) + " failed: " + pcsc_stringify_error(rv);
  switch (rv) {
    case SCARD_W_REMOVED_CARD:
    case SCARD_E_NO_SMARTCARD:
    case SCARD_E_READER_UNAVAILABLE:
    case SCARD_E_NO_READERS_AVAILABLE:
      throw Error(CKR_DEVICE_REMOVED, ErrorKind::TokenRemoved, message, where);
    case SCARD_W_RESET_CARD:
      // Another program reset the card: it is still in the reader, but its PIN state is gone.
      throw Error(CKR_USER_NOT_LOGGED_IN, ErrorKind::LoginLost, message, where);
    case SCARD_E_TIMEOUT:
    case SCARD_E_SHARING_VIOLATION:
    case SCARD_E_NO_SERVICE:
    case SCARD_E_SERVICE_STOPPED:
      throw Error(CKR_DEVICE_ERROR, ErrorKind::Retryable, message, where);
    case SCARD_E_CANCELLED:
      throw Error(CKR_FUNCTION_CANCELED, ErrorKind::Retryable, message, where);
    case SCARD_E_INVALID_PARAMETER:
    case SCARD_E_INVALID_VALUE:
    case SCARD_E_INSUFFICIENT_BUFFER:
      throw Error(CKR_ARGUMENTS_BAD, ErrorKind::BadInput, message, where);
    default:
      throw Error(CKR_DEVICE_ERROR, ErrorKind::Fatal, message, where);
  }
}

void throwOpenssl(std::string_view what, ErrorKind kind, CallSite where) {
  std::string message(what);
  unsigned long code = 0;
  char text[256];
  bool first = true;
  while ((code = ERR_get_error()) != 0) {
    ERR_error_string_n(code, text, sizeof text);
    message += first ? ": " : "; ";
    message += text;
    first = false;
  }
  throw Error(CKR_FUNCTION_FAILED, kind, message, where);
}

void checkOpensslStatus(int status, std::string_view what, CallSite where) {
  if (status != 1) {
    throwOpenssl(what, ErrorKind::Fatal, where);
  }
}

void opensslRandomBytes(std::span<std::uint8_t> out, std::string_view what, CallSite where) {
  while (!out.empty()) {
    const std::size_t chunk = std::min<std::size_t>(out.size(), INT_MAX);
    checkOpensslStatus(RAND_bytes(out.data(), static_cast<int>(chunk)), what, where);
    out = out.subspan(chunk);
  }
}

}  // namespace dojang
