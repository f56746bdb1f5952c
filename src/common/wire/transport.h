// How frames move between the module and the daemon. The socket transport is the real one; the
// in-memory pair lets protocol tests run client and server in one process.
#pragma once

#include <algorithm>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>

#include "src/common/wire/types.h"
#include "src/common/wire/wire_limits.h"

namespace dojang::wire {

// The peer went away or the stream broke; distinct from a malformed frame.
class TransportClosed final : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// No reply came within the receive timeout. Unlike TransportClosed, the request may still be
// running on the other end: the connection must be dropped and the call must not be retried.
class TransportTimedOut final : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Transport {
 public:
  Transport() = default;
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;
  virtual ~Transport() = default;

  // frame starts with kFrameHeaderBytes of space for the length prefix. Throws TransportClosed.
  virtual void send(Bytes& frame) = 0;
  // Replaces payload with the next frame's payload. Throws TransportClosed at end of stream and
  // MalformedFrame when the length prefix breaks the limits.
  virtual void receive(Bytes& payload) = 0;
  // Wakes any thread blocked in receive(); safe to call from another thread.
  virtual void shutdown() noexcept = 0;
  // From now on receive() throws TransportTimedOut when no bytes arrive for this long, and
  // send() when the peer takes none for this long; zero waits forever (the default).
  virtual void setTimeout(std::chrono::milliseconds timeout) { (void)timeout; }

  // The largest payload receive() takes (at most kMaxFrameBytes); a longer length prefix is a
  // MalformedFrame. The daemon keeps it at kMaxHelloFrameBytes until a connection's Hello.
  void setMaxIncomingFrameBytes(std::size_t bytes) noexcept { m_maxIncomingFrameBytes = std::min(bytes, kMaxFrameBytes); }
  [[nodiscard]] std::size_t maxIncomingFrameBytes() const noexcept { return m_maxIncomingFrameBytes; }

 private:
  std::size_t m_maxIncomingFrameBytes = kMaxFrameBytes;
};

// A connected stream socket; owns (and closes) the descriptor.
class SocketTransport final : public Transport {
 public:
  explicit SocketTransport(int fd);
  ~SocketTransport() override;

  void send(Bytes& frame) override;
  void receive(Bytes& payload) override;
  void shutdown() noexcept override;
  void setTimeout(std::chrono::milliseconds timeout) override;
  [[nodiscard]] int fd() const noexcept { return m_fd; }
  // Poll this long for the next bytes before blocking (the daemon's side of a busy connection).
  void setSpinBeforeBlocking(std::chrono::microseconds spin) noexcept { m_spin = spin; }

 private:
  void fill();
  std::size_t readSome(std::uint8_t* into, std::size_t capacity);

  int m_fd;
  std::chrono::microseconds m_spin{0};
  Bytes m_buffer;           // fixed-size read-ahead buffer
  std::size_t m_begin = 0;  // first unconsumed byte of m_buffer
  std::size_t m_end = 0;    // one past the last byte read into m_buffer
};

// Connects to a Unix socket path. Throws TransportClosed with errno's text on failure, and
// TransportTimedOut when the listener does not take the connection within `timeout` (zero: wait
// as long as connect(2) does; a stopped daemon's full backlog would block forever).
std::unique_ptr<SocketTransport> connectUnixSocket(const std::string& path,
                                                   std::chrono::milliseconds timeout = std::chrono::milliseconds(0));

// Two transports wired to each other in memory.
std::pair<std::unique_ptr<Transport>, std::unique_ptr<Transport>> makeMemoryTransportPair();

}  // namespace dojang::wire
