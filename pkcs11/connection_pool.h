// The module's connections to dojangd: a small pool so that threads do not queue behind one
// socket, reconnection after a daemon restart, and gpg-agent-style autostart.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "src/common/cryptoki/cryptoki.h"
#include "src/common/wire/calls.h"
#include "src/common/wire/client_call.h"
#include "src/common/wire/codec.h"
#include "src/common/wire/transport.h"

namespace dojang::frontend {

// Makes a connected transport; tests swap in an in-memory one.
using Connector = std::function<std::unique_ptr<wire::Transport>()>;

// The daemon could not be reached (or started).
using wire::DaemonUnreachable;

// How long the module waits for any sign of life from dojangd: $DOJANG_TIMEOUT_MS, 30 s by
// default, 0 for never; at least 1 s, so that keepalives (wire::kKeepaliveInterval) arrive in time.
std::chrono::milliseconds replyTimeoutFromEnvironment();

class ConnectionPool final {
 public:
  ConnectionPool(Connector connector, wire::HelloRequest hello, std::chrono::milliseconds timeout);
  ConnectionPool(const ConnectionPool&) = delete;
  ConnectionPool& operator=(const ConnectionPool&) = delete;
  ~ConnectionPool();

  // One round trip. On a broken connection it reconnects once; `onNewDaemon` runs when the
  // daemon on the other end is not the one seen before. Returns the reply's CK_RV;
  // CKR_DEVICE_ERROR when dojangd does not answer in time (never retried: it may still be working
  // on the request), CKR_FUNCTION_NOT_SUPPORTED for a call the daemon's protocol lacks.
  template <wire::CallId id>
  CK_RV call(const typename wire::Call<id>::Request& request, typename wire::Call<id>::Reply& reply,
             bool retryOnNewConnection);

  // Called with the daemon's new instance id after a restart is detected.
  void setRestartHandler(std::function<void()> handler) { m_onRestart = std::move(handler); }
  // Wakes every connection (C_Finalize); later calls fail.
  void shutdownAll() noexcept;

 private:
  struct Connection {
    std::unique_ptr<wire::Transport> transport;
    std::uint32_t protocol = 0;              // agreed in Hello
    std::chrono::milliseconds timeout{0};   // what the transport has now
    wire::Bytes frame;
    wire::Bytes payload;
  };
  // Gives the transport the timeout for this call: none for a call that may wait forever on a
  // daemon that cannot send keepalives.
  void armTimeout(Connection& connection, bool callMayWait);
  std::unique_ptr<Connection> acquire();
  void release(std::unique_ptr<Connection> connection);
  void discard(std::unique_ptr<Connection> connection) noexcept;
  std::unique_ptr<Connection> connect();
  // Registers the daemon behind a new connection; notices a restart.
  std::unique_ptr<Connection> welcome(std::unique_ptr<Connection> connection, const wire::HelloReply& reply);

  Connector m_connector;
  wire::HelloRequest m_hello;
  const std::chrono::milliseconds m_timeout;
  std::atomic<std::uint32_t> m_protocol{0};  // the current daemon's, once known
  std::function<void()> m_onRestart;
  std::mutex m_mutex;
  std::vector<std::unique_ptr<Connection>> m_idle;
  std::vector<wire::Transport*> m_busy;
  wire::Bytes m_daemonInstance;
  bool m_shutdown = false;
};

// Connects to the daemon's socket, starting dojangd first when nobody listens there (unless
// DOJANG_NO_AUTOSTART is set). Connecting gives up after `timeout` (zero: never).
Connector socketConnector(std::string socketPath, std::chrono::milliseconds timeout);

template <wire::CallId id>
CK_RV ConnectionPool::call(const typename wire::Call<id>::Request& request,
                           typename wire::Call<id>::Reply& reply, bool retryOnNewConnection) {
  constexpr std::uint32_t needed = wire::protocolOfCall(id);
  for (int attempt = 0;; ++attempt) {
    if (const auto known = m_protocol.load(); known != 0 && known < needed) {
      return CKR_FUNCTION_NOT_SUPPORTED;  // no round trip: that daemon does not have the call
    }
    std::unique_ptr<Connection> connection = acquire();  // throws DaemonUnreachable
    if (connection->protocol < needed) {
      release(std::move(connection));
      return CKR_FUNCTION_NOT_SUPPORTED;
    }
    CK_RV rv = CKR_DEVICE_ERROR;
    try {
      armTimeout(*connection, id == wire::CallId::WaitForSlotEvent);
      rv = static_cast<CK_RV>(wire::roundTrip<id>(*connection->transport, request, reply, connection->frame,
                                                  connection->payload));
    } catch (const wire::TransportTimedOut&) {
      // A late reply must never be read as the answer to a later request.
      wire::wipe(connection->frame);
      discard(std::move(connection));
      return CKR_DEVICE_ERROR;
    } catch (const wire::TransportClosed&) {
      wire::wipe(connection->frame);
      discard(std::move(connection));  // broken: never goes back to the pool
      if (attempt == 0 && retryOnNewConnection) {
        continue;
      }
      return CKR_DEVICE_ERROR;
    } catch (const wire::MalformedFrame&) {
      wire::wipe(connection->frame);
      discard(std::move(connection));  // out of step with the daemon
      return CKR_DEVICE_ERROR;
    }
    wire::wipe(connection->payload);
    release(std::move(connection));
    return rv;
  }
}

}  // namespace dojang::frontend
