#include "server.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <thread>

#include "codec.h"
#include "dispatcher.h"
#include "error.h"
#include "log.h"

namespace dojang::daemon {

namespace {

// See SocketTransport::setSpinBeforeBlocking: bounded, so an idle client costs nothing after it.
// DOJANGD_SPIN_US overrides it (0 turns it off) for measurements on other machines.
std::chrono::microseconds spinBeforeBlocking() {
  static const std::chrono::microseconds spin = [] {
    const char* env = std::getenv("DOJANGD_SPIN_US");
    return std::chrono::microseconds(env != nullptr ? std::strtol(env, nullptr, 10) : 40);
  }();
  return spin;
}

std::string errnoText(const std::string& what) { return what + ": " + std::strerror(errno); }

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

bool peerHasOurUid(int fd, std::string& who) {
  ucred credentials{};
  socklen_t length = sizeof credentials;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) != 0) {
    who = errnoText("SO_PEERCRED");
    return false;
  }
  who = "uid " + std::to_string(credentials.uid) + " pid " + std::to_string(credentials.pid);
  return credentials.uid == ::getuid();
}

}  // namespace

ListeningSocket::ListeningSocket(std::string path) : m_path(std::move(path)) {
  const std::filesystem::path socketPath(m_path);
  preparePrivateDirectory(socketPath.parent_path());
  const std::string lockPath = m_path + ".lock";
  m_lockFd = ::open(lockPath.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (m_lockFd < 0) {
    fail(CKR_GENERAL_ERROR, errnoText("open " + lockPath));
  }
  if (::flock(m_lockFd, LOCK_EX | LOCK_NB) != 0) {
    ::close(m_lockFd);
    m_lockFd = -1;
    throw AlreadyRunning("another dojangd serves " + m_path);
  }
  ::unlink(m_path.c_str());  // a stale socket from a daemon that died
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (m_path.size() >= sizeof address.sun_path) {
    fail(CKR_GENERAL_ERROR, "socket path too long: " + m_path);
  }
  std::memcpy(address.sun_path, m_path.c_str(), m_path.size() + 1);
  m_fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const mode_t oldMask = ::umask(0177);
  const int bound = ::bind(m_fd, reinterpret_cast<const sockaddr*>(&address), sizeof address);
  ::umask(oldMask);
  if (bound != 0 || ::listen(m_fd, 64) != 0) {
    fail(CKR_GENERAL_ERROR, errnoText("bind/listen " + m_path));
  }
}

ListeningSocket::~ListeningSocket() {
  if (m_fd >= 0) {
    ::unlink(m_path.c_str());
    ::close(m_fd);
  }
  if (m_lockFd >= 0) {
    ::close(m_lockFd);
  }
}

Server::Server(Service& service, ListeningSocket& socket) : m_service(service), m_socket(socket) {
  if (::pipe2(m_wakePipe, O_CLOEXEC | O_NONBLOCK) != 0) {
    fail(CKR_GENERAL_ERROR, errnoText("pipe"));
  }
}

Server::~Server() {
  ::close(m_wakePipe[0]);
  ::close(m_wakePipe[1]);
}

void Server::stop() noexcept {
  const char byte = 1;
  (void)!::write(m_wakePipe[1], &byte, 1);
}

void Server::run() {
  logInfo("listening on " + m_socket.path());
  for (;;) {
    pollfd fds[2] = {{m_socket.fd(), POLLIN, 0}, {m_wakePipe[0], POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) {
        continue;
      }
      logError(errnoText("poll"));
      break;
    }
    if ((fds[1].revents & POLLIN) != 0) {
      break;
    }
    if ((fds[0].revents & POLLIN) == 0) {
      continue;
    }
    const int fd = ::accept4(m_socket.fd(), nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      continue;
    }
    std::string who;
    if (!peerHasOurUid(fd, who)) {
      logWarning("refused a connection from " + who + ": only uid " + std::to_string(::getuid()) +
                 " may use this daemon");
      ::close(fd);
      continue;
    }
    logDebug("connection from " + who);
    std::lock_guard lock(m_mutex);
    auto transport = std::make_unique<wire::SocketTransport>(fd);
    transport->setSpinBeforeBlocking(spinBeforeBlocking());
    m_live.emplace(fd, transport.get());
    std::thread([this, owned = std::move(transport)]() mutable {
      const int connectionFd = owned->fd();
      const auto peerGone = [connectionFd] {
        pollfd check{connectionFd, POLLRDHUP, 0};
        return ::poll(&check, 1, 0) > 0 && (check.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
      };
      serveConnection(m_service, *owned, peerGone);
      std::lock_guard done(m_mutex);
      m_live.erase(connectionFd);
      owned.reset();
      m_idle.notify_all();
    }).detach();
  }
  m_service.setStopping();
  std::unique_lock lock(m_mutex);
  m_stopping = true;
  for (auto& [fd, transport] : m_live) {
    transport->shutdown();
  }
  m_idle.wait(lock, [this] { return m_live.empty(); });
  logInfo("stopped");
}

void Server::serveConnection(Service& service, wire::Transport& transport, const std::function<bool()>& peerGone) {
  wire::Bytes payload;
  wire::Bytes frame;
  std::shared_ptr<Client> client;
  try {
    // The first frame must be Hello: it names the client process this connection belongs to.
    transport.receive(payload);
    wire::Decoder decoder(payload);
    std::uint16_t id = 0;
    decoder.read(id);
    if (id != static_cast<std::uint16_t>(wire::CallId::Hello)) {
      logWarning("connection did not start with Hello; closed");
      return;
    }
    wire::HelloRequest hello;
    decoder.read(hello);
    decoder.expectEnd();
    try {
      client = service.attach(hello);
    } catch (const Error& error) {
      logWarning(std::string("hello refused: ") + error.what());
      service.refuseHello(error.rv(), hello, frame);
      transport.send(frame);
      return;
    }
    CallContext context{client, peerGone, {}};
    if (wire::negotiatedProtocol(hello.protocolVersion) >= wire::kKeepaliveSinceProtocol) {
      context.keepAlive = [&transport] {
        wire::Bytes keepalive;
        wire::encodeReply<wire::Empty>(wire::kReplyStillWorking, nullptr, keepalive);
        try {
          transport.send(keepalive);
          return true;
        } catch (const wire::TransportClosed&) {
          return false;
        }
      };
    }
    wire::HelloReply reply;
    service.Hello(context, hello, reply);
    wire::encodeReply(CKR_OK, &reply, frame);
    transport.send(frame);
    for (;;) {
      transport.receive(payload);
      dispatch(service, context, payload, frame);
      wire::wipe(payload);
      transport.send(frame);
    }
  } catch (const wire::TransportClosed&) {
    // The client went away: normal end of a connection.
  } catch (const wire::MalformedFrame& error) {
    logWarning(std::string("malformed frame, connection closed: ") + error.what());
  } catch (const std::exception& error) {
    logError(std::string("connection failed: ") + error.what());
  }
  wire::wipe(payload);
  if (client) {
    service.detach(client);
  }
}

}  // namespace dojang::daemon
