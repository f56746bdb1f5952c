// dojangd's listening socket: bound by dojangd itself on its per-user path, or inherited from
// systemd's dojangd.socket (socket activation, sd_listen_fds). Either way one lock file beside the
// socket tells a second dojangd that the path is served.
#pragma once

#include <sys/types.h>

#include <optional>
#include <utility>
#include <stdexcept>
#include <string>

namespace dojang::daemon {

class AlreadyRunning final : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A listening socket that systemd passed (LISTEN_FDS), checked to be what dojangd.socket makes.
struct InheritedSocket {
  int fd = -1;
};

// The socket systemd passed, or nullopt when dojangd was not socket-activated. Throws
// dojang::Error when LISTEN_FDS is there but its socket is not one listening AF_UNIX SOCK_STREAM
// socket (or there is more than one), and when this dojangd was built without libsystemd.
[[nodiscard]] std::optional<InheritedSocket> inheritedSocket();

// Tells systemd (NOTIFY_SOCKET, Type=notify) that dojangd serves, or that it stops; nothing
// when systemd did not ask.
void notifyReady() noexcept;
void notifyStopping() noexcept;

// Owns the socket and its lock file for the daemon's lifetime.
class ListeningSocket final {
 public:
  // Binds `path` (the directory made private first). Throws AlreadyRunning when another dojangd
  // holds the lock.
  explicit ListeningSocket(std::string path);
  // Serves systemd's socket. The path is systemd's: it is never unlinked here.
  explicit ListeningSocket(InheritedSocket inherited);
  ListeningSocket(const ListeningSocket&) = delete;
  ListeningSocket& operator=(const ListeningSocket&) = delete;
  ~ListeningSocket();

  [[nodiscard]] int fd() const noexcept { return m_fd; }
  [[nodiscard]] const std::string& path() const noexcept { return m_path; }
  [[nodiscard]] bool inherited() const noexcept { return m_inherited; }

 private:
  // False when another dojangd holds it.
  bool lock();

  std::string m_path;
  int m_lockFd = -1;
  int m_fd = -1;
  bool m_inherited = false;
  // The socket file we bound, so that exiting never unlinks a file someone else made since
  // (systemd's, when dojangd.socket was started under a dojangd that was already running).
  std::optional<std::pair<dev_t, ino_t>> m_boundFile;
};

}  // namespace dojang::daemon
