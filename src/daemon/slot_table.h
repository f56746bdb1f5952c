// Stable slot IDs for every token of every driver, and the slot events clients wait for.
// A slot, once numbered, keeps its ID and its place for the daemon's lifetime: slots may lose
// their token, but the list never shrinks (NSS relies on that).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "drivers/token/token.h"
#include "src/common/wire/calls.h"
#include "src/daemon/token_state.h"

namespace dojang::daemon {

class SlotTable final {
 public:
  explicit SlotTable(std::vector<std::unique_ptr<token::Driver>> drivers);
  SlotTable(const SlotTable&) = delete;
  SlotTable& operator=(const SlotTable&) = delete;
  ~SlotTable();

  // How each token's PIN is asked for; set before the first rescan (default: application mode,
  // which is what in-process tests of the core expect).
  void setPinSettings(PinSettings settings) { m_pinSettings = std::move(settings); }

  // Looks at every driver once; called at start-up and by the monitor threads.
  void rescan();
  // One monitor thread per driver: blocks in the driver's wait, or polls.
  void startMonitoring(std::chrono::milliseconds pollInterval);
  void stopMonitoring();

  [[nodiscard]] std::vector<std::uint64_t> slotIds(bool tokenPresentOnly);
  [[nodiscard]] token::SlotDescription slotDescription(std::uint64_t slot);
  // The token now in the slot; throws CKR_SLOT_ID_INVALID or CKR_TOKEN_NOT_PRESENT (also for a
  // token a call found removed, until the rescan that call started has looked again).
  [[nodiscard]] std::shared_ptr<TokenState> tokenIn(std::uint64_t slot);
  [[nodiscard]] std::vector<wire::SlotStatus> status();

  // Events: each is a slot whose token came or went. A client keeps a cursor.
  [[nodiscard]] std::uint64_t eventCursor();
  // Next event after *cursor (advancing it); waits up to `wait` when blocking.
  std::optional<std::uint64_t> nextEvent(std::uint64_t& cursor, std::chrono::milliseconds wait);
  void wakeWaiters();

 private:
  struct SlotRecord {
    std::uint64_t id = 0;
    token::Driver* driver = nullptr;
    token::SlotDescription description;
    std::shared_ptr<TokenState> token;
    std::string openError;  // the last reason the token could not be opened, logged once
    CK_RV openErrorRv = CKR_OK;
  };
  void rescanDriver(token::Driver& driver);
  void pushEventLocked(std::uint64_t slot);

  std::vector<std::unique_ptr<token::Driver>> m_drivers;
  PinSettings m_pinSettings{.defaultMode = PinMode::Application};
  std::mutex m_mutex;
  std::condition_variable m_eventReady;
  std::vector<SlotRecord> m_slots;
  std::deque<std::pair<std::uint64_t, std::uint64_t>> m_events;  // (sequence, slot)
  std::uint64_t m_nextSequence = 1;

  std::atomic<bool> m_stopping{false};
  std::mutex m_stopMutex;
  std::condition_variable m_stopSignal;
  std::vector<std::thread> m_monitors;
};

}  // namespace dojang::daemon
