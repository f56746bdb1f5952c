#include "drivers/pcsc/reader_monitor.h"

#include <algorithm>
#include <thread>
#include <vector>

#include "src/common/errors/foreign_errors.h"

namespace dojang::pcsc {

namespace {
constexpr std::chrono::milliseconds kFirstBackoff{100};
constexpr std::chrono::milliseconds kMaxBackoff{5000};
// The state bits that matter to slots; the rest (in use, exclusive, the event counter in the high
// word) change without a card coming or going.
constexpr DWORD kPresenceBits = SCARD_STATE_PRESENT | SCARD_STATE_EMPTY | SCARD_STATE_UNKNOWN |
                                SCARD_STATE_UNAVAILABLE | SCARD_STATE_MUTE;
}  // namespace

void ReaderMonitor::cancel() {
  m_cancelled = true;
  m_wake.notify_all();
  // SCardCancel only ends a SCardGetStatusChange that is already blocked: a waiter that checked
  // m_cancelled just before we set it would block for good after our one cancel. So cancel again
  // until it has left.
  constexpr int kTries = 100;
  for (int attempt = 0; attempt < kTries; ++attempt) {
    {
      const std::lock_guard lock(m_mutex);
      if (m_context) {
        m_context->cancel();
      }
    }
    if (!m_waiting) {
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

bool ReaderMonitor::pause(std::chrono::milliseconds delay) {
  std::unique_lock lock(m_mutex);
  return !m_wake.wait_for(lock, delay, [this] { return m_cancelled.load(); });
}

void ReaderMonitor::dropContext() {
  const std::lock_guard lock(m_mutex);
  m_context.reset();
  m_known.clear();
}

bool ReaderMonitor::ensureContext() {
  {
    const std::lock_guard lock(m_mutex);
    if (m_context) {
      return true;
    }
  }
  if (m_backoff.count() > 0 && !pause(m_backoff)) {
    return false;
  }
  try {
    Context fresh;
    const std::lock_guard lock(m_mutex);
    if (m_cancelled) {
      return false;
    }
    m_context.emplace(std::move(fresh));
    m_backoff = std::chrono::milliseconds(0);
    return true;
  } catch (const Error&) {
    // pcscd not (yet) there: try again later, less often the longer it stays away.
    m_serviceWasGone = true;
    m_backoff = std::clamp(m_backoff * 2, kFirstBackoff, kMaxBackoff);
    return false;
  }
}

bool ReaderMonitor::waitForChange() {
  struct Waiting {
    std::atomic<bool>& flag;
    explicit Waiting(std::atomic<bool>& waiting) : flag(waiting) { flag = true; }
    ~Waiting() { flag = false; }
    Waiting(const Waiting&) = delete;
    Waiting& operator=(const Waiting&) = delete;
  } waiting(m_waiting);
  while (!m_cancelled) {
    if (!ensureContext()) {
      continue;  // cancelled (the loop ends) or pcscd still away (the backoff grew)
    }
    if (m_serviceWasGone) {
      m_serviceWasGone = false;
      return true;  // pcscd is back: readers and cards may all be new
    }
    std::vector<std::string> names;
    try {
      names = m_context->readers();
    } catch (const Error&) {
      dropContext();
      m_serviceWasGone = true;
      continue;
    }
    names.insert(names.begin(), kPnpNotification);
    std::vector<SCARD_READERSTATE> states(names.size());
    for (std::size_t i = 0; i < names.size(); ++i) {
      states[i].szReader = names[i].c_str();
      const auto known = m_known.find(names[i]);
      states[i].dwCurrentState = known == m_known.end() ? SCARD_STATE_UNAWARE : known->second;
    }
    const bool firstLook = m_known.empty();
    const LONG rv = SCardGetStatusChange(m_context->handle(), INFINITE, states.data(),
                                         static_cast<DWORD>(states.size()));
    if (m_cancelled) {
      return false;
    }
    if (rv == SCARD_E_CANCELLED || rv == SCARD_E_TIMEOUT) {
      continue;
    }
    if (rv == SCARD_E_UNKNOWN_READER) {
      m_known.clear();
      return true;  // a reader went away between the list and the wait
    }
    if (serviceGone(rv)) {
      dropContext();
      m_serviceWasGone = true;
      return true;  // pcscd went away: its readers did too
    }
    checkPcsc(rv, "SCardGetStatusChange");
    bool changed = firstLook;
    const bool readerListKnown = m_known.size() == names.size();
    std::map<std::string, DWORD> next;
    for (std::size_t i = 0; i < names.size(); ++i) {
      const DWORD event = states[i].dwEventState & ~static_cast<DWORD>(SCARD_STATE_CHANGED);
      const auto known = m_known.find(names[i]);
      if (i == 0) {
        changed = changed || (known != m_known.end() && known->second != event);
      } else if (known == m_known.end() || (known->second & kPresenceBits) != (event & kPresenceBits) ||
                 (known->second >> 16) != (event >> 16)) {
        changed = true;  // a card came or went (the high word counts insertions and removals)
      }
      next[names[i]] = event;
    }
    changed = changed || !readerListKnown;
    m_known = std::move(next);
    if (changed) {
      return true;
    }
  }
  return false;
}

}  // namespace dojang::pcsc
