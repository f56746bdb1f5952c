// A pcsc-lite context: SCardEstablishContext in the constructor, SCardReleaseContext in the
// destructor. Every SCard* call goes through dojang::checkPcsc (src/common/errors), which names the
// call and its site and maps the LONG to an ErrorKind.
#pragma once

#include <winscard.h>

#include <string>
#include <vector>

namespace dojang::pcsc {

// pcsc-lite's pseudo-reader: its state changes when a reader is added or removed.
inline constexpr const char* kPnpNotification = "\\\\?PnP?\\Notification";

class Context final {
 public:
  // Throws Error(Retryable) when pcscd is not running (SCARD_E_NO_SERVICE).
  Context();
  Context(Context&& other) noexcept;
  Context& operator=(Context&& other) noexcept;
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;
  ~Context();

  [[nodiscard]] SCARDCONTEXT handle() const noexcept { return m_handle; }
  // The readers pcscd knows now; none is an empty list, not an error.
  [[nodiscard]] std::vector<std::string> readers() const;
  // Whether a card is in `reader` now (SCardGetStatusChange with a zero timeout).
  [[nodiscard]] bool cardPresent(const std::string& reader) const;
  // Makes a blocked SCardGetStatusChange on this context return SCARD_E_CANCELLED. Safe from any
  // thread (pcsc-lite allows SCardCancel concurrently with the call it cancels).
  void cancel() const noexcept;

 private:
  void release() noexcept;
  SCARDCONTEXT m_handle = 0;
  bool m_valid = false;
};

// Whether a PC/SC failure means pcscd itself is gone (stopped, restarted, not yet started), so
// the context must be established again.
[[nodiscard]] bool serviceGone(LONG rv) noexcept;

}  // namespace dojang::pcsc
