// Waits for readers to come and go and cards to be inserted and removed, with
// SCardGetStatusChange over every reader plus the "\\?PnP?\Notification" pseudo-reader. It owns
// its own context, because a blocked SCardGetStatusChange holds up every other call on the same
// context. pcscd stopped, restarted or started after us (SCARD_E_NO_SERVICE and friends): the
// context is established again with a backoff, so the daemon never needs a restart for it.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "drivers/pcsc/context.h"

namespace dojang::pcsc {

class ReaderMonitor final {
 public:
  ReaderMonitor() = default;
  ReaderMonitor(const ReaderMonitor&) = delete;
  ReaderMonitor& operator=(const ReaderMonitor&) = delete;

  // Blocks until a reader was added or removed or a card inserted or removed (true), or pcscd
  // came back after being gone (true: everything may have changed), or cancel() (false).
  bool waitForChange();
  // Makes the current and every later waitForChange() return false. Returns once a current
  // waitForChange() has left (or after about a second).
  void cancel();

 private:
  // Establishes the context, waiting out the backoff first when the last try failed. False when
  // cancelled or when pcscd is still not there.
  bool ensureContext();
  void dropContext();
  // Sleeps up to `delay`; false when cancelled.
  bool pause(std::chrono::milliseconds delay);

  std::mutex m_mutex;  // guards m_context's identity against cancel() from another thread
  std::condition_variable m_wake;
  std::atomic<bool> m_cancelled{false};
  std::atomic<bool> m_waiting{false};  // a thread is inside waitForChange()
  std::optional<Context> m_context;
  bool m_serviceWasGone = false;
  std::chrono::milliseconds m_backoff{0};
  // Last event state per reader (and for the PnP pseudo-reader), passed back as dwCurrentState.
  std::map<std::string, DWORD> m_known;
};

}  // namespace dojang::pcsc
