#include "src/daemon/server.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>
#include <utility>

#include "src/common/errors/error.h"
#include "src/common/wire/codec.h"
#include "src/common/wire/wire_limits.h"
#include "src/daemon/dispatcher.h"
#include "src/daemon/log.h"

namespace dojang::daemon {

namespace {

// Connection threads run the service and the vendor modules below it; OpenSC keeps APDU
// buffers of 64 KiB on the stack, so this leaves room for a few of them. The default 8 MiB
// would let a few hundred idle connections exhaust the address space.
constexpr std::size_t kConnectionStackBytes = 512 * 1024;
// After an accept() error (EMFILE, ENFILE, ENOMEM, ...) the queued connection stays queued, so
// polling again at once would spin; this long is a pause nobody notices.
constexpr std::chrono::milliseconds kAcceptBackoff{100};
// How long a refused connection is kept open for its Hello to arrive, at most how many.
constexpr std::chrono::milliseconds kRefusedLinger{1000};
constexpr std::size_t kMaxLingering = 64;
// What a refused connection's Hello is answered with: the module reports an error at once.
constexpr CK_RV kRefusalRv = CKR_DEVICE_MEMORY;

// See SocketTransport::setSpinBeforeBlocking: bounded, so an idle client costs nothing after it.
// DOJANGD_SPIN_US overrides it (0 turns it off) for measurements on other machines.
std::chrono::microseconds spinBeforeBlocking() {
  static const std::chrono::microseconds spin = [] {
    const char* env = std::getenv("DOJANGD_SPIN_US");
    return std::chrono::microseconds(env != nullptr ? std::strtol(env, nullptr, 10) : 40);
  }();
  return spin;
}

std::string errnoText(const std::string& what, int error = errno) { return what + ": " + std::strerror(error); }

// Field 22 of /proc/PID/stat, the start time in clock ticks since boot; 0 when unreadable.
// Fields are counted after the command name's closing parenthesis, as the name may hold spaces.
std::uint64_t processStartTime(std::uint32_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  const std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  const auto close = text.rfind(')');
  if (close == std::string::npos) {
    return 0;
  }
  std::istringstream fields(text.substr(close + 1));
  std::string field;
  for (int index = 3; fields >> field; ++index) {
    if (index == 22) {
      return std::strtoull(field.c_str(), nullptr, 10);
    }
  }
  return 0;
}

// The process at the other end, as the kernel reports it; false when it is not our uid.
bool peerOf(int fd, PeerProcess& peer, std::string& who) {
  ucred credentials{};
  socklen_t length = sizeof credentials;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) != 0) {
    who = errnoText("SO_PEERCRED");
    return false;
  }
  who = "uid " + std::to_string(credentials.uid) + " pid " + std::to_string(credentials.pid);
  peer.pid = static_cast<std::uint32_t>(credentials.pid);
  peer.startTime = processStartTime(peer.pid);
  return credentials.uid == ::getuid();
}

// Reads and drops what a refused peer sent (its Hello), so closing does not reset the
// connection before the peer has read the refusal.
void drainAndClose(int fd) noexcept {
  std::uint8_t discard[4096];
  for (int round = 0; round < 4 && ::recv(fd, discard, sizeof discard, MSG_DONTWAIT) > 0; ++round) {
  }
  ::close(fd);
}

}  // namespace

struct Server::Connection {
  int fd = -1;
  PeerProcess peer;
  std::chrono::steady_clock::time_point accepted = std::chrono::steady_clock::now();
  std::atomic<bool> welcomed{false};
  bool helloOverdue = false;  // under m_mutex
};

struct Server::ThreadStart {
  Server* server;
  std::shared_ptr<Connection> connection;
};

void RateLimitedWarning::warn(const std::string& message) {
  const auto now = std::chrono::steady_clock::now();
  if (m_loggedAny && now - m_lastLogged < m_quiet) {
    ++m_leftOut;
    return;
  }
  const std::uint64_t leftOut = std::exchange(m_leftOut, 0);
  logWarning(leftOut == 0 ? message
                          : message + " (and " + std::to_string(leftOut) + " more like it since the last such line)");
  m_lastLogged = now;
  m_loggedAny = true;
}

Server::Server(Service& service, ListeningSocket& socket, ConnectionLimits limits)
    : m_service(service), m_socket(socket), m_limits(limits) {
  if (::pipe2(m_wakePipe, O_CLOEXEC | O_NONBLOCK) != 0) {
    fail(CKR_GENERAL_ERROR, errnoText("pipe"));
  }
  // Made now, so refusing needs no memory when memory is what ran out.
  wire::encodeReply<wire::Empty>(kRefusalRv, nullptr, m_refusalFrame);
  const auto length = static_cast<std::uint32_t>(m_refusalFrame.size() - wire::kFrameHeaderBytes);
  for (std::size_t i = 0; i < wire::kFrameHeaderBytes; ++i) {
    m_refusalFrame[i] = static_cast<std::uint8_t>(length >> (8 * i));
  }
  m_refused.reserve(kMaxLingering);
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
    try {
      if (!acceptOnce()) {
        break;
      }
    } catch (const std::exception& error) {
      // Most likely out of memory: pause instead of retrying at once, and keep serving.
      m_acceptBackoffUntil = std::chrono::steady_clock::now() + kAcceptBackoff;
      try {
        m_acceptWarning.warn(std::string("accept loop: ") + error.what());
      } catch (const std::exception&) {
      }
    }
  }
  for (const auto& refused : m_refused) {
    ::close(refused.fd);
  }
  m_refused.clear();
  m_service.setStopping();
  std::unique_lock lock(m_mutex);
  for (auto& [fd, connection] : m_live) {
    ::shutdown(fd, SHUT_RDWR);
  }
  m_idle.wait(lock, [this] { return m_live.empty(); });
  logInfo("stopped");
}

bool Server::acceptOnce() {
  using std::chrono::milliseconds;
  auto now = std::chrono::steady_clock::now();
  std::optional<milliseconds> timeout = closeOverdueHellos();
  const auto sooner = [&](std::chrono::steady_clock::time_point when) {
    const auto left = std::max(milliseconds(0), std::chrono::ceil<milliseconds>(when - now));
    timeout = timeout ? std::min(*timeout, left) : left;
  };
  const bool backingOff = now < m_acceptBackoffUntil;
  if (backingOff) {
    sooner(m_acceptBackoffUntil);
  }
  std::vector<pollfd> fds;
  fds.reserve(2 + m_refused.size());
  fds.push_back({m_wakePipe[0], POLLIN, 0});
  fds.push_back({backingOff ? -1 : m_socket.fd(), POLLIN, 0});  // poll skips a negative fd
  for (const auto& refused : m_refused) {
    fds.push_back({refused.fd, POLLIN, 0});
    sooner(refused.deadline);
  }
  if (::poll(fds.data(), fds.size(), timeout ? static_cast<int>(timeout->count()) : -1) < 0) {
    if (errno != EINTR) {
      m_acceptWarning.warn(errnoText("poll"));
      m_acceptBackoffUntil = std::chrono::steady_clock::now() + kAcceptBackoff;
    }
    return true;
  }
  if ((fds[0].revents & POLLIN) != 0) {
    return false;
  }
  now = std::chrono::steady_clock::now();
  std::size_t kept = 0;
  for (std::size_t i = 0; i < m_refused.size(); ++i) {
    if (fds[2 + i].revents != 0 || now >= m_refused[i].deadline) {
      drainAndClose(m_refused[i].fd);
    } else {
      m_refused[kept++] = m_refused[i];
    }
  }
  m_refused.resize(kept);
  if ((fds[1].revents & POLLIN) != 0) {
    accept();
  }
  return true;
}

void Server::accept() {
  const int fd = ::accept4(m_socket.fd(), nullptr, nullptr, SOCK_CLOEXEC);
  if (fd < 0) {
    const int error = errno;
    if (error != EINTR && error != EAGAIN && error != EWOULDBLOCK && error != ECONNABORTED) {
      m_acceptBackoffUntil = std::chrono::steady_clock::now() + kAcceptBackoff;
      m_acceptWarning.warn(errnoText("cannot accept connections", error) + "; new clients wait until some close");
    }
    return;
  }
  PeerProcess peer;
  std::string who;
  if (!peerOf(fd, peer, who)) {
    logWarning("refused a connection from " + who + ": only uid " + std::to_string(::getuid()) +
               " may use this daemon");
    ::close(fd);
    return;
  }
  logDebug("connection from " + who);
  try {
    auto connection = std::make_shared<Connection>();
    connection->fd = fd;
    connection->peer = peer;
    std::unique_lock lock(m_mutex);
    if (m_live.size() >= m_limits.maxConnections) {
      lock.unlock();
      m_capWarning.warn("refused a connection from pid " + std::to_string(peer.pid) + ": max_connections (" +
                        std::to_string(m_limits.maxConnections) + ") reached");
      refuse(fd);
      return;
    }
    const auto fromPeer = std::count_if(m_live.begin(), m_live.end(),
                                        [&](const auto& entry) { return entry.second->peer.pid == peer.pid; });
    if (static_cast<std::size_t>(fromPeer) >= m_limits.maxConnectionsPerProcess) {
      lock.unlock();
      m_processCapWarning.warn("refused a connection from pid " + std::to_string(peer.pid) +
                               ": it has max_connections_per_process (" +
                               std::to_string(m_limits.maxConnectionsPerProcess) + ") already");
      refuse(fd);
      return;
    }
    m_live.emplace(fd, connection);
    if (const int error = startThread(connection); error != 0) {
      m_live.erase(fd);
      lock.unlock();
      m_threadWarning.warn("refused a connection from pid " + std::to_string(peer.pid) +
                           ": no thread for it (" + std::strerror(error) + ")");
      refuse(fd);
    }
  } catch (const std::exception& error) {
    // Out of memory on the way: the connection is not served, but it is answered and closed.
    {
      std::lock_guard lock(m_mutex);
      m_live.erase(fd);
    }
    refuse(fd);
    m_threadWarning.warn("refused a connection from pid " + std::to_string(peer.pid) + ": " + error.what());
  }
}

int Server::startThread(const std::shared_ptr<Connection>& connection) {
  auto* start = new (std::nothrow) ThreadStart{this, connection};
  if (start == nullptr) {
    return ENOMEM;
  }
  pthread_attr_t attributes;
  pthread_attr_init(&attributes);
  pthread_attr_setstacksize(&attributes, kConnectionStackBytes);
  pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
  pthread_t thread;
  const int error = ::pthread_create(&thread, &attributes, &Server::connectionThread, start);
  pthread_attr_destroy(&attributes);
  if (error != 0) {
    delete start;
  }
  return error;
}

void* Server::connectionThread(void* start) noexcept {
  const std::unique_ptr<ThreadStart> owned(static_cast<ThreadStart*>(start));
  owned->server->serve(owned->connection);
  return nullptr;
}

void Server::serve(const std::shared_ptr<Connection>& connection) noexcept {
  const int fd = connection->fd;
  std::unique_ptr<wire::SocketTransport> transport;
  try {
    transport = std::make_unique<wire::SocketTransport>(fd);
    transport->setSpinBeforeBlocking(spinBeforeBlocking());
    const auto peerGone = [fd] {
      pollfd check{fd, POLLRDHUP, 0};
      return ::poll(&check, 1, 0) > 0 && (check.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
    };
    serveConnection(m_service, *transport, peerGone, connection->peer, [&connection] { connection->welcomed = true; });
  } catch (const std::exception& error) {
    try {
      logError(std::string("connection failed: ") + error.what());
    } catch (const std::exception&) {
    }
  }
  std::lock_guard done(m_mutex);
  m_live.erase(fd);
  if (transport) {
    transport.reset();
  } else {
    ::close(fd);  // the transport was never made, so nobody owns the descriptor
  }
  m_idle.notify_all();
}

void Server::refuse(int fd) noexcept {
  (void)::send(fd, m_refusalFrame.data(), m_refusalFrame.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  if (m_refused.size() < kMaxLingering) {
    m_refused.push_back({fd, std::chrono::steady_clock::now() + kRefusedLinger});  // reserved: no allocation
  } else {
    drainAndClose(fd);
  }
}

std::optional<std::chrono::milliseconds> Server::closeOverdueHellos() {
  const auto now = std::chrono::steady_clock::now();
  std::optional<std::chrono::milliseconds> next;
  std::lock_guard lock(m_mutex);
  for (auto& [fd, connection] : m_live) {
    if (connection->welcomed || connection->helloOverdue) {
      continue;
    }
    const auto due = connection->accepted + m_limits.helloTimeout;
    if (now >= due) {
      connection->helloOverdue = true;
      ::shutdown(fd, SHUT_RDWR);  // its thread's receive ends
      m_helloWarning.warn("closed a connection from pid " + std::to_string(connection->peer.pid) + ": no Hello within " +
                          std::to_string(m_limits.helloTimeout.count()) + " ms");
    } else {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(due - now);
      next = next ? std::min(*next, left) : left;
    }
  }
  return next;
}

void Server::serveConnection(Service& service, wire::Transport& transport, const std::function<bool()>& peerGone,
                             const PeerProcess& peer, const std::function<void()>& welcomed) {
  wire::Bytes payload;
  wire::Bytes frame;
  std::shared_ptr<Client> client;
  try {
    // The first frame must be Hello: it names the client process this connection belongs to.
    // Until then nobody is known, so only a frame of Hello's size is taken.
    transport.setMaxIncomingFrameBytes(wire::kMaxHelloFrameBytes);
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
      client = service.attach(hello, peer);
    } catch (const Error& error) {
      logWarning(std::string("hello refused: ") + error.what());
      service.refuseHello(error.rv(), hello, frame);
      transport.send(frame);
      return;
    }
    transport.setMaxIncomingFrameBytes(wire::kMaxFrameBytes);
    if (welcomed) {
      welcomed();
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
