// One client process as dojangd sees it: its sessions and its own login state, shared by the
// pooled connections that the module opened for it.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "drivers/token/token.h"
#include "src/common/wire/calls.h"
#include "src/daemon/token_state.h"

namespace dojang::daemon {

class SlotTable;

// The process at the other end of a connection: the kernel's pid (SO_PEERCRED) and that
// process's start time, so that a pid reused by a later process is another process.
struct PeerProcess {
  std::uint32_t pid = 0;        // 0 when there is no kernel peer (in-memory transports)
  std::uint64_t startTime = 0;  // clock ticks after boot, /proc/PID/stat field 22; 0 if unknown
  bool operator==(const PeerProcess&) const = default;
};

// C_Login(CKU_CONTEXT_SPECIFIC) waiting for the operation it authorises.
struct PendingContextLogin {
  bool pinGiven = false;  // false: the protected authentication path
  SecureBytes pin;
};

// A client's session: a backend session on the token plus what PKCS#11 remembers about it.
struct ClientSession {
  std::uint64_t handle = 0;
  std::uint64_t slot = 0;
  CK_FLAGS flags = 0;
  std::shared_ptr<TokenState> token;
  std::unique_ptr<token::TokenSession> backend;
  std::vector<token::ObjectId> sessionObjects;  // destroyed with the backend session
  // For the session's next sign or decrypt only; wiped once used, or when another operation is
  // checked.
  std::optional<PendingContextLogin> contextLogin;
  std::mutex mutex;                             // one operation at a time per session
};

class Client final {
 public:
  // `process` made the client; only connections from it may attach to the client.
  Client(ClientNumber number, wire::Bytes id, std::string program, PeerProcess process,
         std::uint64_t eventCursor);
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  [[nodiscard]] ClientNumber number() const noexcept { return m_number; }
  [[nodiscard]] const wire::Bytes& id() const noexcept { return m_id; }
  [[nodiscard]] const std::string& program() const noexcept { return m_program; }
  [[nodiscard]] std::uint32_t pid() const noexcept { return m_process.pid; }
  [[nodiscard]] const PeerProcess& process() const noexcept { return m_process; }

  std::uint64_t addSession(std::shared_ptr<ClientSession> session);
  // Throws CKR_SESSION_HANDLE_INVALID, or CKR_DEVICE_REMOVED once the token went away.
  std::shared_ptr<ClientSession> session(std::uint64_t handle);
  std::shared_ptr<ClientSession> takeSession(std::uint64_t handle);
  std::vector<std::shared_ptr<ClientSession>> takeSessions(std::uint64_t slot);
  std::vector<std::shared_ptr<ClientSession>> takeAllSessions();
  [[nodiscard]] bool hasSessionsOn(std::uint64_t slot);
  [[nodiscard]] bool hasReadOnlySessionOn(std::uint64_t slot);
  [[nodiscard]] std::size_t sessionCount();

  std::atomic<std::uint64_t> eventCursor;
  std::atomic<int> connections{0};

 private:
  const ClientNumber m_number;
  const wire::Bytes m_id;
  const std::string m_program;
  const PeerProcess m_process;
  std::mutex m_mutex;
  std::map<std::uint64_t, std::shared_ptr<ClientSession>> m_sessions;
};

// Session handles are unique across the daemon and start at a random point, so that a handle
// kept from before a daemon restart is very unlikely to name a new session.
std::uint64_t nextSessionHandle();

}  // namespace dojang::daemon
