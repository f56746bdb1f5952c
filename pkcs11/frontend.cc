#include "pkcs11/frontend.h"

#include <algorithm>
#include <mutex>

#include "pkcs11/frontend_calls.h"
#include "pkcs11/marshalling.h"

namespace dojang::frontend {

Frontend::Frontend(Connector connector, std::chrono::milliseconds timeout)
    : m_pool(std::move(connector), makeHello(), timeout) {
  m_pool.setRestartHandler([this] { forgetEverything(); });
}

void Frontend::forgetEverything() {
  // A new daemon: every session, login and checked key of the old one is gone.
  objectsChanged();
  std::lock_guard lock(m_mutex);
  m_sessions.clear();
  m_mechanisms.clear();
  m_checked.clear();
}

CK_RV Frontend::connect() {
  wire::GetSlotListReply ignored;
  return call<wire::CallId::GetSlotList>({false}, ignored);
}

void Frontend::finalize() noexcept {
  m_finalized = true;
  m_pool.shutdownAll();
}

// Closing the last session with a token logs the client out of it (PKCS#11 5.6), so keys the
// daemon approved for that slot must be checked again.
void Frontend::forgetChecksIfLoggedOutLocked(CK_SLOT_ID slot) {
  const bool sessionsLeft = std::any_of(m_sessions.begin(), m_sessions.end(),
                                        [slot](const auto& item) { return item.second->slot == slot; });
  if (!sessionsLeft) {
    std::erase_if(m_checked, [slot](const CheckedUse& use) { return std::get<0>(use) == slot; });
  }
}

std::shared_ptr<SessionState> Frontend::findSession(CK_SESSION_HANDLE session) {
  std::lock_guard lock(m_mutex);
  auto it = m_sessions.find(session);
  return it == m_sessions.end() ? nullptr : it->second;
}

std::shared_ptr<SessionState> Frontend::sessionState(CK_SESSION_HANDLE session) {
  auto state = findSession(session);
  if (state) {
    std::lock_guard keptLock(state->keptMutex);
    state->kept.valid = false;
  }
  return state;
}

CK_RV Frontend::refuseOnSession(CK_SESSION_HANDLE session, CK_RV rv) {
  return sessionState(session) ? rv : CKR_SESSION_HANDLE_INVALID;
}

CK_RV Frontend::lookupMechanism(CK_SLOT_ID slot, CK_MECHANISM_TYPE type, wire::MechanismInfo& out) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    {
      std::lock_guard lock(m_mutex);
      if (auto it = m_mechanisms.find(slot); it != m_mechanisms.end()) {
        for (const auto& entry : it->second) {
          if (entry.type == type) {
            out = entry;
            return CKR_OK;
          }
        }
        return CKR_MECHANISM_INVALID;
      }
    }
    CK_ULONG count = 0;
    if (CK_RV rv = getMechanismList(slot, nullptr, &count); rv != CKR_OK) {  // fills the cache
      return rv;
    }
  }
  return CKR_MECHANISM_INVALID;
}

}  // namespace dojang::frontend
