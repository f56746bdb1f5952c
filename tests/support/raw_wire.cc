#include "tests/support/raw_wire.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <random>

namespace dojang::test {

bool processAlive(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  if (!stat) {
    return false;
  }
  const std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  const auto close = text.rfind(')');
  return close != std::string::npos && close + 2 < text.size() && text[close + 2] != 'Z';
}

wire::Bytes randomClientId() {
  static std::mt19937 random(std::random_device{}());
  wire::Bytes id(16);
  for (auto& byte : id) {
    byte = static_cast<std::uint8_t>(random());
  }
  return id;
}

wire::Bytes helloFrame(const std::string& program, std::uint32_t version, const wire::Bytes& clientId) {
  wire::HelloRequest hello;
  hello.protocolVersion = version;
  hello.clientId = clientId.empty() ? randomClientId() : clientId;
  hello.pid = static_cast<std::uint32_t>(::getpid());
  hello.program = program;
  return requestFrame<wire::CallId::Hello>(hello);
}

RawConnection::RawConnection(const std::filesystem::path& socketPath) {
  m_fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (m_fd < 0) {
    return;
  }
  timeval connectPatience{2, 0};  // connect() waits this long when the listen backlog is full
  ::setsockopt(m_fd, SOL_SOCKET, SO_SNDTIMEO, &connectPatience, sizeof connectPatience);
  timeval replyPatience{10, 0};  // generous: a reply that does not come in 10 s is a hang
  ::setsockopt(m_fd, SOL_SOCKET, SO_RCVTIMEO, &replyPatience, sizeof replyPatience);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  const std::string path = socketPath.string();
  if (path.size() >= sizeof address.sun_path) {
    return;
  }
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  m_connected = ::connect(m_fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0;
}

RawConnection::~RawConnection() {
  if (m_fd >= 0) {
    ::close(m_fd);
  }
}

bool RawConnection::send(const wire::Bytes& bytes) {
  return ::send(m_fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size());
}

std::optional<wire::Bytes> RawConnection::receive() {
  std::array<std::uint8_t, 4> header{};
  if (!readExactly(header.data(), header.size())) {
    return std::nullopt;
  }
  std::uint32_t size = 0;
  for (std::size_t i = 0; i < header.size(); ++i) {
    size |= static_cast<std::uint32_t>(header[i]) << (8 * i);
  }
  if (size > wire::kMaxFrameBytes) {
    return std::nullopt;
  }
  wire::Bytes payload(size);
  if (!readExactly(payload.data(), payload.size())) {
    return std::nullopt;
  }
  return payload;
}

bool RawConnection::closedByPeer() {
  // A refusal the daemon sent before closing (an over-cap Hello answer) is read past.
  std::array<std::uint8_t, 256> discard{};
  for (std::size_t total = 0; total < 64 * 1024;) {
    const ssize_t n = ::recv(m_fd, discard.data(), discard.size(), 0);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return n == 0 || errno == ECONNRESET;
    }
    total += static_cast<std::size_t>(n);
  }
  return false;
}

bool RawConnection::readExactly(std::uint8_t* data, std::size_t size) {
  std::size_t got = 0;
  while (got < size) {
    const ssize_t n = ::recv(m_fd, data + got, size - got, 0);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      m_timedOut = true;
      return false;
    }
    if (n <= 0) {
      return false;
    }
    got += static_cast<std::size_t>(n);
  }
  return true;
}

}  // namespace dojang::test
