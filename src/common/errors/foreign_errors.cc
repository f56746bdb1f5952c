#include "src/common/errors/foreign_errors.h"

#include <openssl/err.h>
#include <openssl/rand.h>
#include <winscard.h>

#include <algorithm>
#include <climits>
#include <cstdio>
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
    case SCARD_F_COMM_ERROR:  // pcscd went away under the call; it may be restarting
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

void checkPcscCard(long rv, std::string_view call, CallSite where) {
  switch (rv) {
    case SCARD_E_NO_SERVICE:
    case SCARD_E_SERVICE_STOPPED:
    case SCARD_F_COMM_ERROR:
    case SCARD_E_INVALID_HANDLE:  // the handle died with the pcscd that made it
      throw Error(CKR_DEVICE_REMOVED, ErrorKind::TokenRemoved,
                  std::string(call) + " failed: " + pcsc_stringify_error(rv) + " (pcscd went away)", where);
    default:
      checkPcsc(rv, call, where);
  }
}

void checkCardStatus(std::uint16_t status, std::string_view command, CallSite where) {
  if (status == 0x9000) {
    return;
  }
  char code[8];
  std::snprintf(code, sizeof code, "%04X", static_cast<unsigned>(status));
  const std::string message = std::string(command) + ": the card answered " + code;
  if ((status & 0xFFF0) == 0x63C0) {
    const unsigned left = status & 0x0F;
    if (left == 0) {
      throw Error(CKR_PIN_LOCKED, ErrorKind::PinLocked, message + " (blocked)", std::optional<unsigned>(0), where);
    }
    throw Error(CKR_PIN_INCORRECT, ErrorKind::PinIncorrect,
                message + " (" + std::to_string(left) + (left == 1 ? " try" : " tries") + " left)",
                std::optional<unsigned>(left), where);
  }
  switch (status) {
    case 0x6983:
      throw Error(CKR_PIN_LOCKED, ErrorKind::PinLocked, message + " (blocked)", std::optional<unsigned>(0), where);
    case 0x6982:
      throw Error(CKR_USER_NOT_LOGGED_IN, ErrorKind::NotLoggedIn, message + " (security status not satisfied)",
                  where);
    case 0x6A82:
      throw Error(CKR_OBJECT_HANDLE_INVALID, ErrorKind::BadInput, message + " (not found)", where);
    case 0x6A84:
      throw Error(CKR_DEVICE_MEMORY, ErrorKind::Fatal, message + " (card memory full)", where);
    case 0x6A80:
    case 0x6A86:
    case 0x6700:
      throw Error(CKR_ARGUMENTS_BAD, ErrorKind::BadInput, message + " (wrong data or parameters)", where);
    case 0x6D00:
    case 0x6E00:
    case 0x6A81:
      throw Error(CKR_FUNCTION_NOT_SUPPORTED, ErrorKind::Unsupported, message + " (not supported)", where);
    case 0x6985:
      throw Error(CKR_FUNCTION_REJECTED, ErrorKind::Refused, message + " (conditions of use not satisfied)", where);
    default:
      throw Error(CKR_DEVICE_ERROR, ErrorKind::Fatal, message, where);
  }
}

OpensslErrors takeOpensslErrors() {
  OpensslErrors errors;
  unsigned long code = 0;
  const char* data = nullptr;
  int flags = 0;
  char text[256];
  while ((code = ERR_get_error_all(nullptr, nullptr, nullptr, &data, &flags)) != 0) {
    ERR_error_string_n(code, text, sizeof text);
    if (!errors.text.empty()) {
      errors.text += "; ";
    }
    errors.text += text;
    // The data says what the code cannot: the server, the HTTP status, the CA's message.
    if ((flags & ERR_TXT_STRING) != 0 && data != nullptr && *data != '\0') {
      errors.text += std::string(" (") + data + ")";
    }
    errors.codes.push_back(code);
  }
  return errors;
}

namespace {

std::string withErrors(std::string_view what, const OpensslErrors& errors) {
  std::string message(what);
  if (!errors.text.empty()) {
    message += ": " + errors.text;
  }
  return message;
}

}  // namespace

void throwOpenssl(std::string_view what, ErrorKind kind, CallSite where) {
  throw Error(CKR_FUNCTION_FAILED, kind, withErrors(what, takeOpensslErrors()), where);
}

void throwLibp11(std::string_view what, int ckrLibrary, CallSite where) {
  const OpensslErrors errors = takeOpensslErrors();
  for (const unsigned long code : errors.codes) {
    if (ERR_GET_LIB(code) == ckrLibrary && ERR_GET_REASON(code) != 0) {
      const auto rv = static_cast<CK_RV>(ERR_GET_REASON(code));
      throw Error(rv, kindOfCkRv(rv), withErrors(std::string(what) + " (" + ckRvName(rv) + ")", errors),
                  where);
    }
  }
  throw Error(CKR_FUNCTION_FAILED, ErrorKind::Fatal, withErrors(what, errors), where);
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
