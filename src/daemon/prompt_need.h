// What a call needs from the PIN prompt of a prompt-mode token (pin_settings.h), and how the
// call asks: the daemon's prompter (src/daemon/prompting) behind a function, so that the core
// does not depend on pinentry.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "drivers/token/secure_bytes.h"
#include "drivers/token/token.h"

namespace dojang::daemon {

// What the prompt asks for.
enum class PromptSecret : std::uint8_t {
  Pin,            // the user's PIN (or the SO PIN / PUK for CKU_SO), to log in
  ManagementKey,  // a PIV card's management key, as hex
  CurrentPin,     // C_SetPIN's old PIN (the SO PIN / PUK for CKU_SO), to change it
  NewPin,         // C_SetPIN's or C_InitPIN's new PIN: typed twice (pinentry's SETREPEAT)
};

struct PromptNeed {
  PromptSecret secret = PromptSecret::Pin;
  // "sign", "decrypt", "log in", "generate a key pair", ...; for CurrentPin and NewPin "change
  // the PIN", "change the SO PIN" or "reset the PIN" (C_InitPIN, e.g. unblocking with the PUK).
  std::string operation;
  CK_USER_TYPE user = CKU_USER;
  std::string tokenLabel;
  token::PinState pin;
  token::Bytes certificate;  // DER of the certificate of the key in use, to name its holder
};

struct PromptAccess {
  // Returns the PIN typed, or throws Error: CKR_FUNCTION_CANCELED (cancelled, or the client
  // went away) or CKR_FUNCTION_FAILED (nowhere to ask, pinentry failed or timed out).
  std::function<SecureBytes(const PromptNeed&)> ask;
  // Called about every 250 ms while the call waits for another client's prompt; throws
  // CKR_FUNCTION_CANCELED once the client has gone.
  std::function<void()> stillWaiting;
};

}  // namespace dojang::daemon
