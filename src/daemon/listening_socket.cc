#include "src/daemon/listening_socket.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#ifdef DOJANG_HAVE_SD_DAEMON
#include <systemd/sd-daemon.h>
#endif

#include "src/common/errors/error.h"
#include "src/daemon/log.h"

namespace dojang::daemon {

namespace {

constexpr int kListenBacklog = 64;

std::string errnoText(const std::string& what, int error = errno) { return what + ": " + std::strerror(error); }

// The socket's directory must be ours alone: other users must not even see the socket.
void preparePrivateDirectory(const std::filesystem::path& directory) {
  std::error_code ignored;
  if (!std::filesystem::exists(directory)) {
    std::filesystem::create_directories(directory.parent_path(), ignored);
    if (::mkdir(directory.c_str(), 0700) != 0 && errno != EEXIST) {
      fail(CKR_GENERAL_ERROR, errnoText("mkdir " + directory.string()));
    }
  }
  struct stat info {};
  if (::stat(directory.c_str(), &info) != 0) {
    fail(CKR_GENERAL_ERROR, errnoText("stat " + directory.string()));
  }
  if (info.st_uid != ::getuid()) {
    fail(CKR_GENERAL_ERROR, directory.string() + " belongs to another user");
  }
  if (directory.filename() == "dojang" && (info.st_mode & 0077) != 0) {
    ::chmod(directory.c_str(), 0700);
  }
}

int socketOption(int fd, int option) {
  int value = -1;
  socklen_t length = sizeof value;
  return ::getsockopt(fd, SOL_SOCKET, option, &value, &length) == 0 ? value : -1;
}

// Why the descriptor is not what dojangd.socket passes, or empty when it is.
std::string whatIsWrongWith(int fd) {
  struct stat info {};
  if (::fstat(fd, &info) != 0) {
    return errnoText("it cannot be examined");
  }
  if (!S_ISSOCK(info.st_mode)) {
    return "it is not a socket";
  }
  if (const int family = socketOption(fd, SO_DOMAIN); family != AF_UNIX) {
    return "it is not a Unix socket (address family " + std::to_string(family) + ")";
  }
  if (socketOption(fd, SO_TYPE) != SOCK_STREAM) {
    return "it is not a stream socket (ListenStream=)";
  }
  if (socketOption(fd, SO_ACCEPTCONN) != 1) {
    return "it is not listening (a connection, as with Accept=yes?)";
  }
  return {};
}

std::string boundPath(int fd) {
  sockaddr_un address{};
  socklen_t length = sizeof address;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    fail(CKR_GENERAL_ERROR, errnoText("getsockname on the socket systemd passed"));
  }
  const auto pathBytes = length > offsetof(sockaddr_un, sun_path) ? length - offsetof(sockaddr_un, sun_path) : 0;
  if (pathBytes == 0 || address.sun_path[0] == 0) {
    fail(CKR_GENERAL_ERROR, "the socket systemd passed has no path (ListenStream= must name a file)");
  }
  return std::string(address.sun_path, ::strnlen(address.sun_path, pathBytes));
}

std::optional<std::pair<dev_t, ino_t>> fileIdentity(const std::string& path) {
  struct stat info {};
  if (::lstat(path.c_str(), &info) != 0) {
    return std::nullopt;
  }
  return std::pair{info.st_dev, info.st_ino};
}

bool someoneListens(const sockaddr_un& address) {
  const int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (probe < 0) {
    return false;
  }
  const bool connected = ::connect(probe, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0;
  ::close(probe);
  return connected;
}

}  // namespace

#ifdef DOJANG_HAVE_SD_DAEMON

std::optional<InheritedSocket> inheritedSocket() {
  // Unsets LISTEN_FDS and LISTEN_PID, so that `dojang renew --auto` children do not take them.
  const int count = ::sd_listen_fds(1);
  if (count < 0) {
    fail(CKR_GENERAL_ERROR, "LISTEN_FDS from systemd cannot be read: " + std::string(std::strerror(-count)));
  }
  if (count == 0) {
    return std::nullopt;
  }
  if (count > 1) {
    fail(CKR_GENERAL_ERROR, "systemd passed " + std::to_string(count) +
                                " sockets; dojangd serves exactly one (one ListenStream= in dojangd.socket)");
  }
  const int fd = SD_LISTEN_FDS_START;
  if (const std::string wrong = whatIsWrongWith(fd); !wrong.empty()) {
    fail(CKR_GENERAL_ERROR, "the socket systemd passed (fd " + std::to_string(fd) +
                                ") cannot be served: " + wrong +
                                "; dojangd needs a listening AF_UNIX SOCK_STREAM socket (ListenStream=PATH, Accept=no)");
  }
  return InheritedSocket{fd};
}

void notifyReady() noexcept { ::sd_notify(0, "READY=1"); }
void notifyStopping() noexcept { ::sd_notify(0, "STOPPING=1"); }

#else

std::optional<InheritedSocket> inheritedSocket() {
  if (std::getenv("LISTEN_FDS") != nullptr) {
    fail(CKR_GENERAL_ERROR,
         "systemd passed a socket (LISTEN_FDS), but this dojangd was built without libsystemd and "
         "cannot take it; start dojangd without dojangd.socket");
  }
  return std::nullopt;
}

void notifyReady() noexcept {}
void notifyStopping() noexcept {}

#endif

ListeningSocket::ListeningSocket(std::string path) : m_path(std::move(path)) {
  const std::filesystem::path socketPath(m_path);
  preparePrivateDirectory(socketPath.parent_path());
  if (!lock()) {
    throw AlreadyRunning("another dojangd serves " + m_path);
  }
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (m_path.size() >= sizeof address.sun_path) {
    fail(CKR_GENERAL_ERROR, "socket path too long: " + m_path);
  }
  std::memcpy(address.sun_path, m_path.c_str(), m_path.size() + 1);
  // Without the lock but with a listener: systemd's dojangd.socket, waiting to start a dojangd.
  if (someoneListens(address)) {
    ::close(m_lockFd);
    m_lockFd = -1;
    throw AlreadyRunning(m_path + " is served by another listener (systemd's dojangd.socket?)");
  }
  ::unlink(m_path.c_str());  // a stale socket from a daemon that died
  m_fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const mode_t oldMask = ::umask(0177);
  const int bound = ::bind(m_fd, reinterpret_cast<const sockaddr*>(&address), sizeof address);
  ::umask(oldMask);
  if (bound != 0 || ::listen(m_fd, kListenBacklog) != 0) {
    fail(CKR_GENERAL_ERROR, errnoText("bind/listen " + m_path));
  }
  m_boundFile = fileIdentity(m_path);
}

ListeningSocket::ListeningSocket(InheritedSocket inherited)
    : m_path(boundPath(inherited.fd)), m_fd(inherited.fd), m_inherited(true) {
  ::fcntl(m_fd, F_SETFD, FD_CLOEXEC);
  // The lock keeps a dojangd started by hand from unlinking systemd's socket and binding its
  // own. One that already runs (started before dojangd.socket) holds it and serves a file
  // systemd has replaced: clients reach this dojangd, so it serves all the same.
  if (!lock()) {
    logWarning("another dojangd holds " + m_path + ".lock (started before dojangd.socket?); " +
               "clients reach this one, through the socket systemd passed");
  }
}

bool ListeningSocket::lock() {
  const std::string lockPath = m_path + ".lock";
  m_lockFd = ::open(lockPath.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (m_lockFd < 0) {
    fail(CKR_GENERAL_ERROR, errnoText("open " + lockPath));
  }
  if (::flock(m_lockFd, LOCK_EX | LOCK_NB) != 0) {
    ::close(m_lockFd);
    m_lockFd = -1;
    return false;
  }
  return true;
}

ListeningSocket::~ListeningSocket() {
  if (m_fd >= 0) {
    if (!m_inherited && m_boundFile && fileIdentity(m_path) == m_boundFile) {
      ::unlink(m_path.c_str());
    }
    ::close(m_fd);
  }
  if (m_lockFd >= 0) {
    ::close(m_lockFd);
  }
}

}  // namespace dojang::daemon
