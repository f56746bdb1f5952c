// The one place where foreign failure codes (CK_RV, PC/SC LONG, OpenSSL's error queue) become
// dojang's typed errors. Every error knows the CK_RV a PKCS#11 caller should see and the call site
// that raised it.
#pragma once

#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "src/common/cryptoki/cryptoki.h"

namespace dojang {

// Where an error was raised. std::source_location would do, but clang 14 with libstdc++ 12 (the
// sanitizer and fuzzing build) lacks it; these builtins exist in both compilers.
struct CallSite {
  const char* file = "";
  unsigned line = 0;
  const char* function = "";
  static constexpr CallSite current(const char* file = __builtin_FILE(), unsigned line = __builtin_LINE(),
                                    const char* function = __builtin_FUNCTION()) noexcept {
    return {file, line, function};
  }
};

// What a caller can do about an error; finer than CK_RV for the daemon and the CLI.
enum class ErrorKind {
  Fatal,         // a bug or a broken component; give up
  Retryable,     // transient (busy, timeout); the same call may work later
  PinIncorrect,  // the user typed a wrong PIN; never retried automatically
  PinLocked,     // the PIN is blocked; the user must unblock or re-initialise
  TokenRemoved,  // the token or reader went away mid-operation
  LoginLost,     // the token is still there but its login is gone (a card reset by another program)
  NotLoggedIn,   // needs a login first
  BadInput,      // the caller's arguments or data are wrong
  Unsupported,   // not offered by this token, mechanism or build
  Refused,       // a peer (CA, token policy) said no on purpose
  // The operation needs an administrator credential nobody gave: a PIV card's management key
  // that is neither configured nor the default (Token::authorizeAdministrator supplies it).
  CredentialNeeded,
};

class Error : public std::runtime_error {
 public:
  Error(CK_RV rv, ErrorKind kind, const std::string& message, CallSite where = CallSite::current());
  // A wrong PIN, with the tries the token has left when it tells.
  Error(CK_RV rv, ErrorKind kind, const std::string& message, std::optional<unsigned> pinRetriesLeft,
        CallSite where = CallSite::current());

  [[nodiscard]] CK_RV rv() const noexcept { return m_rv; }
  [[nodiscard]] ErrorKind kind() const noexcept { return m_kind; }
  [[nodiscard]] const CallSite& where() const noexcept { return m_where; }
  // Set for wrong PINs when the token says how many tries are left.
  [[nodiscard]] std::optional<unsigned> pinRetriesLeft() const noexcept { return m_pinRetriesLeft; }

 private:
  CK_RV m_rv;
  ErrorKind m_kind;
  CallSite m_where;
  std::optional<unsigned> m_pinRetriesLeft;
};

// Classifies a PKCS#11 return value.
[[nodiscard]] ErrorKind kindOfCkRv(CK_RV rv) noexcept;
// The symbolic name of a CK_RV ("CKR_PIN_INCORRECT"), or hex for unknown codes.
[[nodiscard]] std::string ckRvName(CK_RV rv);

// Throws unless rv is CKR_OK. `call` names the foreign function for the message.
void checkCkRv(CK_RV rv, std::string_view call, CallSite where = CallSite::current());
[[noreturn]] void throwCkRv(CK_RV rv, std::string_view call, CallSite where = CallSite::current());

// Convenience for our own checks: an error with the CK_RV a client should receive.
[[noreturn]] void fail(CK_RV rv, const std::string& message, CallSite where = CallSite::current());

}  // namespace dojang
