// The listening socket and the connections: one thread per connection, peers checked with
// SO_PEERCRED, every connection starting with Hello.
#pragma once

#include <condition_variable>
#include <map>
#include <mutex>
#include <string>

#include "service.h"
#include "transport.h"

namespace dojang::daemon {

// Owns the socket path and its lock file for the daemon's lifetime.
class ListeningSocket final {
 public:
  // Throws AlreadyRunning when another dojangd holds the lock.
  explicit ListeningSocket(std::string path);
  ListeningSocket(const ListeningSocket&) = delete;
  ListeningSocket& operator=(const ListeningSocket&) = delete;
  ~ListeningSocket();

  [[nodiscard]] int fd() const noexcept { return m_fd; }
  [[nodiscard]] const std::string& path() const noexcept { return m_path; }

 private:
  std::string m_path;
  int m_lockFd = -1;
  int m_fd = -1;
};

class AlreadyRunning final : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Server final {
 public:
  Server(Service& service, ListeningSocket& socket);
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;
  ~Server();

  // Accepts connections until stop(); then closes every connection and waits for their threads.
  void run();
  // Async-signal-safe enough to call from the signal thread.
  void stop() noexcept;

  // Serves one already-connected transport until it closes (protocol tests use this directly).
  static void serveConnection(Service& service, wire::Transport& transport, const std::function<bool()>& peerGone);

 private:
  void handle(int fd);

  Service& m_service;
  ListeningSocket& m_socket;
  int m_wakePipe[2] = {-1, -1};
  std::mutex m_mutex;
  std::condition_variable m_idle;
  std::map<int, wire::SocketTransport*> m_live;
  bool m_stopping = false;
};

}  // namespace dojang::daemon
