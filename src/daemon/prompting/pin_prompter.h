// dojangd's PIN prompt for prompt-mode tokens: who is asking (from the kernel's pid, never from
// what the client says), where to ask (the requesting process's display or terminal), what the
// prompt says (program, holder, token, retries left), and one pinentry run that the waiting
// call keeps alive and that ends when the client goes away.
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>

#include "drivers/token/secure_bytes.h"
#include "src/daemon/pin_settings.h"
#include "src/daemon/prompt_need.h"

namespace dojang::daemon {

class Client;

// Where a process can be asked: its DISPLAY, WAYLAND_DISPLAY, XAUTHORITY, locale and TERM from
// /proc/PID/environ, and its terminal: GPG_TTY, else the tty its stdin, stdout or stderr is.
struct PromptSurface {
  std::string display, waylandDisplay, xauthority, tty, ttyType, lcCtype;
};
[[nodiscard]] PromptSurface surfaceOfProcess(pid_t pid);

// The program as the kernel knows it: the name of /proc/PID/exe ("chromium", "ssh"), with the
// script for an interpreter ("python3 sign.py"); `fallback` when the process cannot be read.
[[nodiscard]] std::string programOfProcess(pid_t pid, const std::string& fallback);

struct PromptText {
  std::string title, description, prompt, errorText;
  std::string repeatError;  // for a new PIN (typed twice): what pinentry says when they differ
};
// What the prompt says, in Korean when the client's locale is Korean, otherwise in English.
// Names the program and pid, the operation, the certificate's holder and type, the token, and the
// retries left (plainly at the last one). A PIN change or reset says which PIN it asks for: the
// current one (with the retries left) or the new one.
[[nodiscard]] PromptText promptText(const std::string& program, pid_t pid, const PromptNeed& need,
                                    const std::string& locale);

class PinPrompter final {
 public:
  explicit PinPrompter(PinSettings settings) : m_settings(std::move(settings)) {}

  // Asks for `client` and returns the PIN. `callAlive` is called at least every 250 ms while the
  // prompt is open (it keeps the call alive); false cancels the prompt. Throws Error:
  // CKR_PIN_LOCKED (no prompt for a locked PIN), CKR_FUNCTION_CANCELED (cancelled, or the client
  // left), CKR_FUNCTION_FAILED (nowhere to ask, no answer in time, pinentry failed).
  SecureBytes ask(const Client& client, const PromptNeed& need, const std::function<bool()>& callAlive) const;

 private:
  PinSettings m_settings;
};

}  // namespace dojang::daemon
