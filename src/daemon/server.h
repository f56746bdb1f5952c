// The listening socket and the connections: one thread per connection, peers checked with
// SO_PEERCRED, every connection starting with Hello. Resources run out gracefully: over the
// connection caps, or when no thread can be made, a connection is refused with CKR_DEVICE_MEMORY
// and closed; accept() errors back off; a connection that sends no Hello in time is closed.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "src/common/wire/transport.h"
#include "src/daemon/client.h"
#include "src/daemon/config.h"
#include "src/daemon/listening_socket.h"
#include "src/daemon/service.h"

namespace dojang::daemon {

// A warning that may repeat in bursts: the first is logged, then at most one line per quiet
// period, counting the ones left out.
class RateLimitedWarning final {
 public:
  explicit RateLimitedWarning(std::chrono::seconds quiet) : m_quiet(quiet) {}
  void warn(const std::string& message);

 private:
  std::chrono::seconds m_quiet;
  std::chrono::steady_clock::time_point m_lastLogged{};
  bool m_loggedAny = false;
  std::uint64_t m_leftOut = 0;
};

class Server final {
 public:
  Server(Service& service, ListeningSocket& socket, ConnectionLimits limits = {});
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;
  ~Server();

  // Accepts connections until stop(); then closes every connection and waits for their threads.
  void run();
  // Async-signal-safe enough to call from the signal thread.
  void stop() noexcept;

  // Serves one already-connected transport until it closes (protocol tests use this directly).
  // `peer` is the process at the other end; `welcomed` runs once its Hello is accepted.
  static void serveConnection(Service& service, wire::Transport& transport, const std::function<bool()>& peerGone,
                              const PeerProcess& peer = {}, const std::function<void()>& welcomed = {});

 private:
  struct Connection;
  struct ThreadStart;
  // A refused connection has its reply written and stays open until its Hello has arrived (so
  // the peer reads the reply, not a reset) or a short deadline passes.
  struct Refused {
    int fd;
    std::chrono::steady_clock::time_point deadline;
  };

  // One pass of the accept loop; false once stop() was called.
  bool acceptOnce();
  void accept();
  // 0, or the errno of the failure; the thread gets a small stack.
  int startThread(const std::shared_ptr<Connection>& connection);
  static void* connectionThread(void* start) noexcept;
  void serve(const std::shared_ptr<Connection>& connection) noexcept;
  void refuse(int fd) noexcept;
  // Closes connections whose Hello is overdue; returns how long until the next one is due.
  std::optional<std::chrono::milliseconds> closeOverdueHellos();

  Service& m_service;
  ListeningSocket& m_socket;
  const ConnectionLimits m_limits;
  int m_wakePipe[2] = {-1, -1};
  std::mutex m_mutex;
  std::condition_variable m_idle;
  std::map<int, std::shared_ptr<Connection>> m_live;

  // Only the accept loop's thread touches these.
  wire::Bytes m_refusalFrame;
  std::vector<Refused> m_refused;
  std::chrono::steady_clock::time_point m_acceptBackoffUntil{};
  RateLimitedWarning m_capWarning{std::chrono::seconds(10)};
  RateLimitedWarning m_processCapWarning{std::chrono::seconds(10)};
  RateLimitedWarning m_threadWarning{std::chrono::seconds(10)};
  RateLimitedWarning m_acceptWarning{std::chrono::seconds(10)};
  RateLimitedWarning m_helloWarning{std::chrono::seconds(10)};
};

}  // namespace dojang::daemon
