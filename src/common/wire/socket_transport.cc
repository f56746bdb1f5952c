#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "src/common/wire/codec.h"
#include "src/common/wire/transport.h"
#include "src/common/wire/wire_limits.h"

namespace dojang::wire {

namespace {
constexpr std::size_t kReadChunk = 64 * 1024;

// A payload's first allocation when the bytes read ahead are fewer.
constexpr std::size_t kFirstPayloadStep = 16 * 1024;

std::uint32_t readPrefix(const std::uint8_t* bytes) {
  return static_cast<std::uint32_t>(bytes[0]) | (static_cast<std::uint32_t>(bytes[1]) << 8) |
         (static_cast<std::uint32_t>(bytes[2]) << 16) | (static_cast<std::uint32_t>(bytes[3]) << 24);
}

// Makes payload `size` bytes long, keeping what it holds. A payload may hold a PIN or key
// bytes, so a buffer it outgrows is wiped before it is freed.
void growWiping(Bytes& payload, std::size_t size) {
  if (size > payload.capacity()) {
    Bytes larger;
    larger.reserve(size);
    larger.assign(payload.begin(), payload.end());
    wipe(payload);
    payload.swap(larger);
  }
  payload.resize(size);
}
}  // namespace

SocketTransport::SocketTransport(int fd) : m_fd(fd), m_buffer(kReadChunk) {}

SocketTransport::~SocketTransport() {
  wipe(m_buffer);
  ::close(m_fd);
}

void SocketTransport::send(Bytes& frame) {
  if (frame.size() < kFrameHeaderBytes || frame.size() - kFrameHeaderBytes > kMaxFrameBytes) {
    throw MalformedFrame("outgoing frame over the size limit");
  }
  const auto length = static_cast<std::uint32_t>(frame.size() - kFrameHeaderBytes);
  for (std::size_t i = 0; i < kFrameHeaderBytes; ++i) {
    frame[i] = static_cast<std::uint8_t>(length >> (8 * i));
  }
  std::size_t sent = 0;
  while (sent < frame.size()) {
    // MSG_NOSIGNAL: a vanished peer must be an error here, never SIGPIPE in the host program.
    const ssize_t n = ::send(m_fd, frame.data() + sent, frame.size() - sent, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        throw TransportTimedOut("send: the peer took nothing within the timeout");
      }
      throw TransportClosed(std::string("send: ") + std::strerror(errno));
    }
    sent += static_cast<std::size_t>(n);
  }
}

std::size_t SocketTransport::readSome(std::uint8_t* into, std::size_t capacity) {
  ssize_t n = -1;
  bool settled = false;
  if (m_spin.count() > 0) {
    // A busy peer's next frame usually follows within microseconds; polling for it briefly
    // saves the wake-up of a blocked thread, the largest part of a round trip's cost.
    const auto deadline = std::chrono::steady_clock::now() + m_spin;
    do {
      n = ::recv(m_fd, into, capacity, MSG_DONTWAIT);
      settled = n >= 0 || (errno != EAGAIN && errno != EINTR);
    } while (!settled && std::chrono::steady_clock::now() < deadline);
  }
  while (!settled) {
    n = ::recv(m_fd, into, capacity, 0);
    settled = n >= 0 || errno != EINTR;
  }
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
    throw TransportTimedOut("recv: nothing arrived within the timeout");  // SO_RCVTIMEO
  }
  if (n <= 0) {
    throw TransportClosed(n == 0 ? "peer closed the connection" : std::string("recv: ") + std::strerror(errno));
  }
  return static_cast<std::size_t>(n);
}

void SocketTransport::setTimeout(std::chrono::milliseconds timeout) {
  const auto micros = std::chrono::duration_cast<std::chrono::microseconds>(timeout).count();
  timeval limit{static_cast<time_t>(micros / 1000000), static_cast<suseconds_t>(micros % 1000000)};
  if (::setsockopt(m_fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit) != 0 ||
      ::setsockopt(m_fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit) != 0) {
    throw TransportClosed(std::string("setsockopt: ") + std::strerror(errno));
  }
}

// Reads whatever the socket has into the read-ahead buffer, so that a small frame usually costs
// one recv.
void SocketTransport::fill() {
  if (m_end == m_buffer.size()) {
    // Only a partial header can be left here (payloads are copied out as they arrive).
    const std::size_t left = m_end - m_begin;
    std::memmove(m_buffer.data(), m_buffer.data() + m_begin, left);
    explicit_bzero(m_buffer.data() + left, m_end - left);
    m_begin = 0;
    m_end = left;
  }
  m_end += readSome(m_buffer.data() + m_end, m_buffer.size() - m_end);
}

void SocketTransport::receive(Bytes& payload) {
  while (m_end - m_begin < kFrameHeaderBytes) {
    fill();
  }
  const std::uint32_t length = readPrefix(m_buffer.data() + m_begin);
  if (length > maxIncomingFrameBytes()) {
    throw MalformedFrame("incoming frame over the size limit");
  }
  m_begin += kFrameHeaderBytes;
  // The payload grows with the bytes that have arrived (at most doubling), never from the length
  // prefix alone: a peer that announces 4 MiB and sends 10 bytes costs about 10 bytes.
  payload.clear();
  std::size_t have = 0;
  while (have < length) {
    if (have == payload.size()) {
      const std::size_t step = std::max({have, m_end - m_begin, kFirstPayloadStep});
      growWiping(payload, have + std::min<std::size_t>(length - have, step));
    }
    if (m_begin < m_end) {
      const std::size_t taken = std::min(payload.size() - have, m_end - m_begin);
      std::memcpy(payload.data() + have, m_buffer.data() + m_begin, taken);
      m_begin += taken;
      have += taken;
    } else {
      // Beyond what was read ahead, bytes go straight into the payload.
      have += readSome(payload.data() + have, payload.size() - have);
    }
  }
  if (m_begin == m_end) {
    // Only the bytes used are wiped: they may have held a PIN.
    explicit_bzero(m_buffer.data(), m_end);
    m_begin = 0;
    m_end = 0;
  }
}

void SocketTransport::shutdown() noexcept { ::shutdown(m_fd, SHUT_RDWR); }

std::unique_ptr<SocketTransport> connectUnixSocket(const std::string& path, std::chrono::milliseconds timeout) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.size() >= sizeof address.sun_path) {
    throw TransportClosed("socket path too long: " + path);
  }
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    throw TransportClosed(std::string("socket: ") + std::strerror(errno));
  }
  auto transport = std::make_unique<SocketTransport>(fd);
  const auto connectOnce = [&] { return ::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address); };
  if (timeout.count() == 0) {
    if (connectOnce() != 0) {
      throw TransportClosed("connect " + path + ": " + std::strerror(errno));
    }
    return transport;
  }
  // A Unix socket whose listener stopped accepting answers a non-blocking connect with EAGAIN
  // once its backlog is full: try again until the deadline.
  const int flags = ::fcntl(fd, F_GETFL);
  ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (connectOnce() == 0 || errno == EISCONN) {
      break;
    }
    if (errno == EINPROGRESS) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      pollfd writable{fd, POLLOUT, 0};
      int error = 0;
      socklen_t length = sizeof error;
      if (::poll(&writable, 1, static_cast<int>(std::max<std::int64_t>(left.count(), 0))) <= 0) {
        throw TransportTimedOut("connect " + path + ": timed out");
      }
      if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0 || error != 0) {
        throw TransportClosed("connect " + path + ": " + std::strerror(error != 0 ? error : errno));
      }
      break;
    }
    if (errno != EAGAIN && errno != EINTR) {
      throw TransportClosed("connect " + path + ": " + std::strerror(errno));
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      throw TransportTimedOut("connect " + path + ": the listener's backlog stayed full");
    }
    ::usleep(10000);
  }
  ::fcntl(fd, F_SETFL, flags);
  return transport;
}

}  // namespace dojang::wire
