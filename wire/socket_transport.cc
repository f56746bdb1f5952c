#include <cerrno>
#include <cstring>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "codec.h"
#include "wire_limits.h"
#include "transport.h"

namespace dojang::wire {

namespace {
constexpr std::size_t kReadChunk = 64 * 1024;

std::uint32_t readPrefix(const std::uint8_t* bytes) {
  return static_cast<std::uint32_t>(bytes[0]) | (static_cast<std::uint32_t>(bytes[1]) << 8) |
         (static_cast<std::uint32_t>(bytes[2]) << 16) | (static_cast<std::uint32_t>(bytes[3]) << 24);
}
}  // namespace

SocketTransport::SocketTransport(int fd) : m_fd(fd) {}

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
      throw TransportClosed(std::string("send: ") + std::strerror(errno));
    }
    sent += static_cast<std::size_t>(n);
  }
}

// Reads whatever the socket has, so that a small frame usually costs one recv.
void SocketTransport::fill() {
  if (m_start > 0 && m_start == m_buffer.size()) {
    m_buffer.clear();
    m_start = 0;
  }
  const std::size_t old = m_buffer.size();
  m_buffer.resize(old + kReadChunk);
  ssize_t n = 0;
  do {
    n = ::recv(m_fd, m_buffer.data() + old, kReadChunk, 0);
  } while (n < 0 && errno == EINTR);
  if (n <= 0) {
    m_buffer.resize(old);
    throw TransportClosed(n == 0 ? "peer closed the connection"
                                 : std::string("recv: ") + std::strerror(errno));
  }
  m_buffer.resize(old + static_cast<std::size_t>(n));
}

void SocketTransport::receive(Bytes& payload) {
  while (m_buffer.size() - m_start < kFrameHeaderBytes) {
    fill();
  }
  const std::uint32_t length = readPrefix(m_buffer.data() + m_start);
  if (length > kMaxFrameBytes) {
    throw MalformedFrame("incoming frame over the size limit");
  }
  while (m_buffer.size() - m_start < kFrameHeaderBytes + length) {
    fill();
  }
  const auto first = m_buffer.begin() + static_cast<std::ptrdiff_t>(m_start + kFrameHeaderBytes);
  payload.assign(first, first + length);
  m_start += kFrameHeaderBytes + length;
  if (m_start == m_buffer.size()) {
    // Keeps the buffer's capacity but not the old bytes, which may include a PIN.
    wipe(m_buffer);
    m_buffer.clear();
    m_start = 0;
  }
}

void SocketTransport::shutdown() noexcept { ::shutdown(m_fd, SHUT_RDWR); }

std::unique_ptr<SocketTransport> connectUnixSocket(const std::string& path) {
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
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    throw TransportClosed("connect " + path + ": " + std::strerror(errno));
  }
  return transport;
}

}  // namespace dojang::wire
