// Talking to a real dojangd by hand, byte by byte, the way a hostile or broken local process
// would: frames built with the real encoder where they are valid, a connection whose every wait
// is bounded, and the small waits the robustness and limits tests share.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <thread>

#include "src/common/cryptoki/cryptoki.h"
#include "src/common/wire/codec.h"

namespace dojang::test {

// Polls `condition` every 20 ms until it holds or `patience` runs out.
template <class Condition>
bool eventually(Condition&& condition, std::chrono::seconds patience = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + patience;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) {
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

// Alive and not a zombie waiting to be reaped.
[[nodiscard]] bool processAlive(pid_t pid);

[[nodiscard]] wire::Bytes randomClientId();

// A whole request frame, length prefix filled in, ready to write to a socket.
template <wire::CallId id>
wire::Bytes requestFrame(const typename wire::Call<id>::Request& request) {
  wire::Bytes frame;
  wire::encodeRequest<id>(request, frame);
  const auto size = static_cast<std::uint32_t>(frame.size() - wire::kFrameHeaderBytes);
  for (std::size_t i = 0; i < wire::kFrameHeaderBytes; ++i) {
    frame[i] = static_cast<std::uint8_t>(size >> (8 * i));
  }
  return frame;
}

// A Hello from this process; an empty clientId means a fresh random one.
[[nodiscard]] wire::Bytes helloFrame(const std::string& program, std::uint32_t version = wire::kProtocolVersion,
                                     const wire::Bytes& clientId = {});

// A connection that speaks frames by hand. Every wait is bounded (2 s to connect when the
// listen backlog is full, 10 s for a reply), so a daemon that hangs fails the test instead of
// blocking it.
class RawConnection final {
 public:
  explicit RawConnection(const std::filesystem::path& socketPath);
  ~RawConnection();
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;

  [[nodiscard]] bool connected() const noexcept { return m_connected; }
  // False when the daemon has closed the connection.
  bool send(const wire::Bytes& bytes);
  // The next reply's payload; nullopt when the connection closed or nothing came in 10 s
  // (timedOut() tells which).
  std::optional<wire::Bytes> receive();
  // The reply's CK_RV, and its fields decoded into `reply` when it is CKR_OK.
  template <class Reply = wire::Empty>
  std::optional<CK_RV> call(const wire::Bytes& frame, Reply* reply = nullptr) {
    if (!send(frame)) {
      return std::nullopt;
    }
    const auto payload = receive();
    if (!payload || payload->size() < sizeof(std::uint64_t)) {
      return std::nullopt;
    }
    wire::Decoder decoder(*payload);
    std::uint64_t rv = 0;
    decoder.read(rv);
    if (rv == CKR_OK && reply != nullptr) {
      decoder.read(*reply);
    }
    return static_cast<CK_RV>(rv);
  }
  // True when the daemon closes the connection (EOF) within 10 s, after any reply it sent.
  bool closedByPeer();

  [[nodiscard]] bool timedOut() const noexcept { return m_timedOut; }
  [[nodiscard]] int fd() const noexcept { return m_fd; }

 private:
  bool readExactly(std::uint8_t* data, std::size_t size);

  int m_fd = -1;
  bool m_connected = false;
  bool m_timedOut = false;
};

}  // namespace dojang::test
