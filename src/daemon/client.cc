#include "src/daemon/client.h"

#include <algorithm>
#include <random>

#include "src/common/errors/error.h"

namespace dojang::daemon {

std::uint64_t nextSessionHandle() {
  static std::atomic<std::uint64_t> next = [] {
    std::random_device random;
    return (static_cast<std::uint64_t>(random()) & 0x3fffffffu) + 1;
  }();
  return next.fetch_add(1) & 0xffffffffu;
}

Client::Client(ClientNumber number, wire::Bytes id, std::string program, PeerProcess process,
               std::uint64_t cursor)
    : eventCursor(cursor), m_number(number), m_id(std::move(id)), m_program(std::move(program)), m_process(process) {}

std::uint64_t Client::addSession(std::shared_ptr<ClientSession> session) {
  std::lock_guard lock(m_mutex);
  const auto handle = session->handle;
  m_sessions.emplace(handle, std::move(session));
  return handle;
}

std::shared_ptr<ClientSession> Client::session(std::uint64_t handle) {
  std::shared_ptr<ClientSession> found;
  {
    std::lock_guard lock(m_mutex);
    auto it = m_sessions.find(handle);
    if (it == m_sessions.end()) {
      fail(CKR_SESSION_HANDLE_INVALID, "no such session");
    }
    found = it->second;
  }
  if (found->token->removed()) {
    fail(CKR_DEVICE_REMOVED, "the token was removed");
  }
  return found;
}

std::shared_ptr<ClientSession> Client::takeSession(std::uint64_t handle) {
  std::lock_guard lock(m_mutex);
  auto it = m_sessions.find(handle);
  if (it == m_sessions.end()) {
    fail(CKR_SESSION_HANDLE_INVALID, "no such session");
  }
  auto taken = std::move(it->second);
  m_sessions.erase(it);
  return taken;
}

std::vector<std::shared_ptr<ClientSession>> Client::takeSessions(std::uint64_t slot) {
  std::lock_guard lock(m_mutex);
  std::vector<std::shared_ptr<ClientSession>> taken;
  for (auto it = m_sessions.begin(); it != m_sessions.end();) {
    if (it->second->slot == slot) {
      taken.push_back(std::move(it->second));
      it = m_sessions.erase(it);
    } else {
      ++it;
    }
  }
  return taken;
}

std::vector<std::shared_ptr<ClientSession>> Client::takeAllSessions() {
  std::lock_guard lock(m_mutex);
  std::vector<std::shared_ptr<ClientSession>> taken;
  for (auto& [handle, session] : m_sessions) {
    taken.push_back(std::move(session));
  }
  m_sessions.clear();
  return taken;
}

bool Client::hasSessionsOn(std::uint64_t slot) {
  std::lock_guard lock(m_mutex);
  for (const auto& [handle, session] : m_sessions) {
    if (session->slot == slot) {
      return true;
    }
  }
  return false;
}

bool Client::hasReadOnlySessionOn(std::uint64_t slot) {
  std::lock_guard lock(m_mutex);
  return std::any_of(m_sessions.begin(), m_sessions.end(), [slot](const auto& item) {
    return item.second->slot == slot && (item.second->flags & CKF_RW_SESSION) == 0;
  });
}

std::size_t Client::sessionCount() {
  std::lock_guard lock(m_mutex);
  return m_sessions.size();
}

}  // namespace dojang::daemon
