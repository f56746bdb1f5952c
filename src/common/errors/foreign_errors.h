// Translators for the non-PKCS#11 failure sources. Kept apart from error.h so that the
// dependency-light PKCS#11 module never pulls in OpenSSL or pcsc-lite.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "src/common/errors/error.h"

struct sqlite3;  // <sqlite3.h>, for those who use SQLite only

namespace dojang {

// PC/SC: throws unless rv is SCARD_S_SUCCESS; removal and timeouts get their own kinds.
void checkPcsc(long rv, std::string_view call,
               CallSite where = CallSite::current());

// PC/SC calls on a card handle (SCardBeginTransaction, SCardTransmit, ...): as checkPcsc, except
// that pcscd gone (stopped, restarted) means the card is out of reach, so TokenRemoved.
void checkPcscCard(long rv, std::string_view call,
                   CallSite where = CallSite::current());

// ISO/IEC 7816-4 status words (SW1-SW2, clause 5.6) from a card application: throws unless
// `status` is 9000. 63Cx is a wrong PIN with x tries left (PinIncorrect), 6983 a blocked one
// (PinLocked), 6982 a missing PIN or key authentication (NotLoggedIn), 6A82 an absent object or
// application; `command` names the APDU for the message.
void checkCardStatus(std::uint16_t status, std::string_view command,
                     CallSite where = CallSite::current());

// OpenSSL: drains the thread's error queue into the message and throws.
[[noreturn]] void throwOpenssl(std::string_view what, ErrorKind kind = ErrorKind::Fatal,
                               CallSite where = CallSite::current());

// OpenSSL's error queue, drained: each entry's packed code (for ERR_GET_LIB / ERR_GET_REASON) and
// all entries' text with their data, "; "-separated. For callers that classify a failure (a CMP
// transfer that timed out, a CA that is down) before they throw.
struct OpensslErrors final {
  std::vector<unsigned long> codes;
  std::string text;
};
[[nodiscard]] OpensslErrors takeOpensslErrors();

// libp11 reports a module's CK_RV as the reason of an entry in its own error library, whose
// number the caller passes (libp11's ERR_get_CKR_code(); errors/ does not link libp11). Throws
// with that CK_RV and its kind (CKR_PIN_INCORRECT: PinIncorrect), or CKR_FUNCTION_FAILED and
// Fatal when no entry carries one; the message has the drained queue.
[[noreturn]] void throwLibp11(std::string_view what, int ckrLibrary,
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

// Fills `out` from OpenSSL's random generator; throws with the OpenSSL error queue when it
// cannot (RAND_bytes failed: no entropy).
void opensslRandomBytes(std::span<std::uint8_t> out, std::string_view what,
                        CallSite where = CallSite::current());

// The wire transport (wire/transport.h, wire/codec.h), called from a catch block: the exception
// being handled, a closed or silent connection to `peer` or a frame that breaks the protocol,
// becomes an Error(CKR_DEVICE_ERROR), Retryable for a timeout and Fatal otherwise. Any other
// exception is rethrown as it is.
[[noreturn]] void throwTransportFailure(std::string_view peer, CallSite where = CallSite::current());

// SQLite: "SQLite: <what>", followed by the database's own message (sqlite3_errmsg) when
// `database` is given. Returned rather than thrown, so a caller can close the handle first.
[[nodiscard]] Error sqliteError(sqlite3* database, std::string_view what,
                                CallSite where = CallSite::current());

}  // namespace dojang
