// The module's connections to dojangd: a small pool so that threads do not queue behind one
// socket, reconnection after a daemon restart, and gpg-agent-style autostart.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "calls.h"
#include "codec.h"
#include "cryptoki.h"
#include "transport.h"

namespace dojang::frontend {

// Makes a connected transport; tests swap in an in-memory one.
using Connector = std::function<std::unique_ptr<wire::Transport>()>;

// The daemon could not be reached (or started).
class DaemonUnreachable final : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class ConnectionPool final {
 public:
  ConnectionPool(Connector connector, wire::HelloRequest hello);
  ConnectionPool(const ConnectionPool&) = delete;
  ConnectionPool& operator=(const ConnectionPool&) = delete;
  ~ConnectionPool();

  // One round trip. On a broken connection it reconnects once; `onNewDaemon` runs when the
  // daemon on the other end is not the one seen before. Returns the reply's CK_RV.
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
    wire::Bytes frame;
    wire::Bytes payload;
  };
  std::unique_ptr<Connection> acquire();
  void release(std::unique_ptr<Connection> connection);
  void discard(std::unique_ptr<Connection> connection) noexcept;
  std::unique_ptr<Connection> connect();

  Connector m_connector;
  wire::HelloRequest m_hello;
  std::function<void()> m_onRestart;
  std::mutex m_mutex;
  std::vector<std::unique_ptr<Connection>> m_idle;
  std::vector<wire::Transport*> m_busy;
  wire::Bytes m_daemonInstance;
  bool m_shutdown = false;
};

// Connects to the daemon's socket, starting dojangd first when nobody listens there (unless
// DOJANG_NO_AUTOSTART is set).
Connector socketConnector(std::string socketPath);

template <wire::CallId id>
CK_RV ConnectionPool::call(const typename wire::Call<id>::Request& request,
                           typename wire::Call<id>::Reply& reply, bool retryOnNewConnection) {
  for (int attempt = 0;; ++attempt) {
    std::unique_ptr<Connection> connection = acquire();  // throws DaemonUnreachable
    wire::encodeRequest<id>(request, connection->frame);
    try {
      connection->transport->send(connection->frame);
      wire::wipe(connection->frame);
      connection->transport->receive(connection->payload);
    } catch (const wire::TransportClosed&) {
      discard(std::move(connection));  // broken: never goes back to the pool
      if (attempt == 0 && retryOnNewConnection) {
        continue;
      }
      return CKR_DEVICE_ERROR;
    } catch (const wire::MalformedFrame&) {
      discard(std::move(connection));
      return CKR_DEVICE_ERROR;
    }
    CK_RV rv = CKR_DEVICE_ERROR;
    try {
      wire::Decoder decoder(connection->payload);
      std::uint64_t wireRv = 0;
      decoder.read(wireRv);
      rv = static_cast<CK_RV>(wireRv);
      if (rv == CKR_OK) {
        decoder.read(reply);
        decoder.expectEnd();
      }
    } catch (const wire::MalformedFrame&) {
      discard(std::move(connection));  // out of step with the daemon
      return CKR_DEVICE_ERROR;
    }
    wire::wipe(connection->payload);
    release(std::move(connection));
    return rv;
  }
}

}  // namespace dojang::frontend
