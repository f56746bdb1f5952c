#include "src/daemon/slot_table.h"

#include <algorithm>

#include "src/common/errors/error.h"
#include "src/daemon/log.h"

namespace dojang::daemon {

namespace {
constexpr std::size_t kMaxQueuedEvents = 1024;
}

SlotTable::SlotTable(std::vector<std::unique_ptr<token::Driver>> drivers) : m_drivers(std::move(drivers)) {}

SlotTable::~SlotTable() {
  stopMonitoring();
  std::lock_guard lock(m_mutex);
  for (auto& record : m_slots) {
    if (record.token) {
      record.token->setRemovalHandler({});  // sessions may keep the token a little longer
    }
  }
}

void SlotTable::rescan() {
  for (auto& driver : m_drivers) {
    rescanDriver(*driver);
  }
}

void SlotTable::rescanDriver(token::Driver& driver) {
  std::vector<token::SlotDescription> seen;
  try {
    seen = driver.slots();
  } catch (const Error& error) {
    logWarning("driver " + driver.name() + ": cannot list slots: " + error.what());
    return;
  }
  for (auto& description : seen) {
    const bool present = (description.flags & CKF_TOKEN_PRESENT) != 0;
    std::unique_lock lock(m_mutex);
    auto record = std::find_if(m_slots.begin(), m_slots.end(), [&](const SlotRecord& r) {
      return r.driver == &driver && r.description.key == description.key;
    });
    if (record == m_slots.end()) {
      m_slots.push_back({m_slots.size() + 1, &driver, description, nullptr});
      record = std::prev(m_slots.end());
      logInfo("slot " + std::to_string(record->id) + ": " + driver.name() + " " + description.description);
    }
    record->description = description;
    const std::uint64_t slot = record->id;
    if (record->token != nullptr && record->token->removed()) {
      // Found gone by a call (see TokenState::tokenRemoved); a token in the slot now is a new one.
      record->token.reset();
      logInfo("slot " + std::to_string(slot) + ": token removed");
      pushEventLocked(slot);
    }
    const bool hadToken = record->token != nullptr;
    if (present == hadToken) {
      continue;
    }
    if (!present) {
      record->token->markRemoved();
      record->token.reset();
      logInfo("slot " + std::to_string(slot) + ": token removed");
      pushEventLocked(slot);
      continue;
    }
    lock.unlock();  // opening a token talks to hardware; don't hold up clients
    std::shared_ptr<TokenState> state;
    try {
      state = std::make_shared<TokenState>(slot, driver.openToken(description.key));
      // A call that finds the token gone rescans at once instead of waiting for the poller.
      state->setRemovalHandler([this, &driver] { rescanDriver(driver); });
      const auto token = state->description();
      const auto mode = m_pinSettings.modeFor(token.label, token.serialNumber);
      state->setPinMode(mode, m_pinSettings.cache, m_pinSettings.cacheLifetime);
      logInfo("slot " + std::to_string(slot) + ": token \"" + token.label +
              "\" present (PIN: " + pinModeName(mode) + ")");
    } catch (const Error& error) {
      // Rescans retry every poll; say it once per distinct failure, not every second.
      std::lock_guard again(m_mutex);
      auto& failed = m_slots[slot - 1];
      failed.openErrorRv = error.rv();
      if (failed.openError != error.what()) {
        failed.openError = error.what();
        logWarning("slot " + std::to_string(slot) + ": cannot open token: " + error.what());
      }
      continue;
    }
    lock.lock();
    auto again =
        std::find_if(m_slots.begin(), m_slots.end(), [slot](const SlotRecord& r) { return r.id == slot; });
    if (again->token == nullptr) {
      again->openError.clear();
      again->openErrorRv = CKR_OK;
      again->token = std::move(state);
      pushEventLocked(slot);
    }
  }
  // Slots the driver no longer reports keep their IDs but lose their tokens.
  std::lock_guard lock(m_mutex);
  for (auto& record : m_slots) {
    if (record.driver != &driver || record.token == nullptr) {
      continue;
    }
    const bool stillThere = std::any_of(seen.begin(), seen.end(), [&](const token::SlotDescription& d) {
      return d.key == record.description.key;
    });
    if (!stillThere) {
      record.token->markRemoved();
      record.token.reset();
      record.description.flags &= ~CKF_TOKEN_PRESENT;
      pushEventLocked(record.id);
    }
  }
}

void SlotTable::pushEventLocked(std::uint64_t slot) {
  m_events.emplace_back(m_nextSequence++, slot);
  while (m_events.size() > kMaxQueuedEvents) {
    m_events.pop_front();
  }
  m_eventReady.notify_all();
}

void SlotTable::startMonitoring(std::chrono::milliseconds pollInterval) {
  for (auto& driver : m_drivers) {
    m_monitors.emplace_back([this, raw = driver.get(), pollInterval] {
      while (!m_stopping) {
        bool changed = false;
        try {
          changed = raw->waitForChange();
        } catch (const Error& error) {
          logWarning("driver " + raw->name() + ": " + error.what());
        }
        if (m_stopping) {
          break;
        }
        if (!changed) {
          std::unique_lock lock(m_stopMutex);
          m_stopSignal.wait_for(lock, pollInterval, [this] { return m_stopping.load(); });
        }
        if (!m_stopping) {
          rescanDriver(*raw);
        }
      }
    });
  }
}

void SlotTable::stopMonitoring() {
  {
    std::lock_guard lock(m_stopMutex);
    m_stopping = true;
  }
  m_stopSignal.notify_all();
  for (auto& driver : m_drivers) {
    driver->cancelWait();
  }
  for (auto& thread : m_monitors) {
    thread.join();
  }
  m_monitors.clear();
  wakeWaiters();
}

std::vector<std::uint64_t> SlotTable::slotIds(bool tokenPresentOnly) {
  std::lock_guard lock(m_mutex);
  std::vector<std::uint64_t> ids;
  for (const auto& record : m_slots) {
    if (!tokenPresentOnly || (record.token != nullptr && !record.token->removed())) {
      ids.push_back(record.id);
    }
  }
  return ids;
}

token::SlotDescription SlotTable::slotDescription(std::uint64_t slot) {
  std::lock_guard lock(m_mutex);
  if (slot == 0 || slot > m_slots.size()) {
    fail(CKR_SLOT_ID_INVALID, "no such slot");
  }
  auto description = m_slots[slot - 1].description;
  if (m_slots[slot - 1].token != nullptr && !m_slots[slot - 1].token->removed()) {
    description.flags |= CKF_TOKEN_PRESENT;
  } else {
    description.flags &= ~CKF_TOKEN_PRESENT;
  }
  return description;
}

std::shared_ptr<TokenState> SlotTable::tokenIn(std::uint64_t slot) {
  std::lock_guard lock(m_mutex);
  if (slot == 0 || slot > m_slots.size()) {
    fail(CKR_SLOT_ID_INVALID, "no such slot");
  }
  if (m_slots[slot - 1].token == nullptr || m_slots[slot - 1].token->removed()) {
    fail(CKR_TOKEN_NOT_PRESENT, "no token in slot");
  }
  return m_slots[slot - 1].token;
}

namespace {
// What a person needs to know about a slot: a token that is in but cannot be opened is not
// "absent", and an uninitialised one (SoftHSM's spare slot, a blank card) says so.
std::string slotStateText(const auto& record) {
  if (record.token != nullptr) {
    return "present";
  }
  if ((record.description.flags & CKF_TOKEN_PRESENT) == 0) {
    return "empty";
  }
  return record.openErrorRv == CKR_TOKEN_NOT_RECOGNIZED ? "not initialised" : "unusable";
}
std::int32_t retriesOrUnknown(const token::PinState& pin) {
  if (pin.locked) {
    return 0;
  }
  return pin.retriesLeft ? static_cast<std::int32_t>(std::min(*pin.retriesLeft, 1000u)) : -1;
}
}  // namespace

std::vector<wire::SlotStatus> SlotTable::status() {
  std::vector<std::pair<wire::SlotStatus, std::shared_ptr<TokenState>>> rows;
  {
    std::lock_guard lock(m_mutex);
    for (const auto& record : m_slots) {
      wire::SlotStatus row;
      row.slot = record.id;
      row.backend = record.driver->name();
      row.tokenPresent = record.token != nullptr;
      row.state = slotStateText(record);
      if (record.token == nullptr && (record.description.flags & CKF_TOKEN_PRESENT) != 0) {
        row.problem = record.openErrorRv == CKR_TOKEN_NOT_RECOGNIZED
                          ? "the token is not initialised (" + record.openError +
                                "); initialise it with its vendor's tool, e.g. softhsm2-util --init-token"
                          : record.openError;
      }
      rows.emplace_back(row, record.token);
    }
  }
  std::vector<wire::SlotStatus> out;
  for (auto& [row, state] : rows) {
    if (state) {
      row.tokenLabel = state->description().label;
      row.loggedInClients = state->loggedInClientCount();
      row.cachedObjects = static_cast<std::uint32_t>(state->cachedObjectCount());
      try {
        const auto pins = state->token().pinState();
        row.userPinRetriesLeft = retriesOrUnknown(pins.user);
        row.soPinRetriesLeft = retriesOrUnknown(pins.so);
      } catch (const Error&) {
        // A token that does not answer now still has its row; its counts are unknown.
      }
    }
    out.push_back(row);
  }
  return out;
}

std::uint64_t SlotTable::eventCursor() {
  std::lock_guard lock(m_mutex);
  return m_nextSequence - 1;
}

std::optional<std::uint64_t> SlotTable::nextEvent(std::uint64_t& cursor, std::chrono::milliseconds wait) {
  std::unique_lock lock(m_mutex);
  auto pending = [&]() -> std::optional<std::uint64_t> {
    for (const auto& [sequence, slot] : m_events) {
      if (sequence > cursor) {
        cursor = sequence;
        return slot;
      }
    }
    return std::nullopt;
  };
  if (auto slot = pending()) {
    return slot;
  }
  if (wait.count() > 0 && !m_stopping) {
    m_eventReady.wait_for(lock, wait);
    return pending();
  }
  return std::nullopt;
}

void SlotTable::wakeWaiters() {
  std::lock_guard lock(m_mutex);
  m_eventReady.notify_all();
}

}  // namespace dojang::daemon
