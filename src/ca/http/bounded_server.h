// An httplib::Server that slow, idle or flooding clients cannot take over (docs/ca.md,
// "Connections"): a fixed pool of workers with a bounded line of waiting connections, a deadline
// for each whole request besides the idle timeout on every read, and keep-alive only when the
// next request follows at once.
#pragma once

#include <httplib.h>

#include <chrono>
#include <cstddef>

namespace dojang::ca {

struct ConnectionLimits final {
  size_t workers = 64;             // requests handled at the same time
  size_t waitingConnections = 128; // accepted, waiting for a worker; then the kernel backlog
  int listenBacklog = 128;
  std::chrono::milliseconds idleTimeout{2000};      // silence allowed while reading a request
  std::chrono::milliseconds requestDeadline{5000};  // the whole request line, headers and body
  std::chrono::milliseconds writeTimeout{5000};
  std::chrono::milliseconds keepAliveTimeout{1000};  // wait for the next request on a connection
  size_t keepAliveMaxRequests = 4;
};

class BoundedServer final : public httplib::Server {
 public:
  explicit BoundedServer(const ConnectionLimits& limits);

  // After bind_to_port: httplib listens with a backlog of 5, too short for a burst of clients.
  [[nodiscard]] bool widenListenBacklog();

  // From the post-routing handler: this response is the connection's last.
  static void closeAfterThisResponse();

 private:
  bool process_and_close_socket(socket_t socket) override;

  ConnectionLimits m_limits;
};

}  // namespace dojang::ca
