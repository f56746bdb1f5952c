// dojangd's PIN prompts: one run of a pinentry program (pinentry-curses, -gnome3, -qt, ...) spoken
// to over Assuan with libassuan, on the display or tty of the session that asked.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>

#include "drivers/token/secure_bytes.h"

namespace dojang::daemon::pinentry {

struct PromptRequest {
  std::string program = "pinentry";  // absolute path, or a name looked up in PATH
  // Where to show it: passed to pinentry as --display/--ttyname/--ttytype/--lc-ctype and as OPTION
  // lines. WAYLAND_DISPLAY and XAUTHORITY go into the child's environment (pinentry has no OPTION
  // for them); DISPLAY does too. Empty values remove dojangd's own from the child's environment.
  std::string display, waylandDisplay, xauthority, tty, ttyType, lcCtype;
  std::string title;                 // SETTITLE
  std::string description;           // SETDESC; may be multi-line and UTF-8 (Korean); escaped here
  std::string prompt;                // SETPROMPT
  std::string errorText;             // SETERROR, when not empty (e.g. "Wrong PIN, 2 tries left")
  std::string okLabel, cancelLabel;  // SETOK / SETCANCEL when not empty
  bool repeat = false;               // SETREPEAT: ask twice (a new PIN); mismatch handled by pinentry
  std::string repeatError;           // SETREPEATERROR text
  // SETTIMEOUT; also a hard deadline (this plus kDeadlineGrace) after which the child is killed.
  // Zero or less: no timeout at all (only cancel() ends a prompt nobody answers).
  std::chrono::seconds timeout{60};
};

enum class PromptOutcome : std::uint8_t { Entered, Canceled, TimedOut, Failed };

struct PromptResult {
  PromptOutcome outcome = PromptOutcome::Failed;
  SecureBytes pin;     // only for Entered
  std::string detail;  // why, for Failed (one line: "pinentry not found: ...", "no display or tty ...")
};

// How long after the request's timeout a pinentry that has not answered is killed: a pinentry that
// honours SETTIMEOUT answers by itself before then.
inline constexpr std::chrono::seconds kDeadlineGrace{3};

// Whether a request has anywhere to show a prompt (display, wayland display or tty non-empty).
bool hasSurface(const PromptRequest& request);

// One pinentry run. run() blocks until the user answers, cancels, the timeout passes, or cancel()
// is called from another thread (which makes run() return Canceled promptly, killing the child).
// Never throws for pinentry's own failures (they are PromptOutcome::Failed). The child gets no
// descriptor of dojangd's but its stdin/stdout pipes and /dev/null as stderr, default signal
// dispositions, and is always reaped before run() returns. libassuan sets SIGPIPE to SIG_IGN in
// the process the first time (dojangd ignores it anyway).
class Prompt final {
 public:
  explicit Prompt(PromptRequest request);
  ~Prompt();  // the child never outlives run(); this closes the wake-up descriptor
  Prompt(const Prompt&) = delete;
  Prompt& operator=(const Prompt&) = delete;

  // Once per Prompt; a second call returns Failed.
  PromptResult run();
  void cancel() noexcept;  // thread-safe, idempotent, may be called before or during run()

 private:
  PromptRequest m_request;
  std::atomic<bool> m_canceled{false};
  std::atomic<bool> m_ran{false};
  int m_wakeFd = -1;  // eventfd, readable once cancel() was called: wakes run()'s waits
};

}  // namespace dojang::daemon::pinentry
