#include <condition_variable>
#include <deque>
#include <mutex>

#include "src/common/wire/codec.h"
#include "src/common/wire/transport.h"

namespace dojang::wire {

namespace {

// One direction of an in-memory connection.
struct Channel {
  std::mutex mutex;
  std::condition_variable ready;
  std::deque<Bytes> frames;
  bool closed = false;
};

class MemoryTransport final : public Transport {
 public:
  MemoryTransport(std::shared_ptr<Channel> inbound, std::shared_ptr<Channel> outbound)
      : m_inbound(std::move(inbound)), m_outbound(std::move(outbound)) {}
  ~MemoryTransport() override { shutdown(); }

  void send(Bytes& frame) override {
    if (frame.size() < kFrameHeaderBytes || frame.size() - kFrameHeaderBytes > kMaxFrameBytes) {
      throw MalformedFrame("outgoing frame over the size limit");
    }
    std::lock_guard lock(m_outbound->mutex);
    if (m_outbound->closed) {
      throw TransportClosed("peer closed the connection");
    }
    m_outbound->frames.emplace_back(frame.begin() + kFrameHeaderBytes, frame.end());
    m_outbound->ready.notify_one();
  }

  void receive(Bytes& payload) override {
    std::unique_lock lock(m_inbound->mutex);
    const auto arrived = [&] { return !m_inbound->frames.empty() || m_inbound->closed; };
    if (m_timeout.count() == 0) {
      m_inbound->ready.wait(lock, arrived);
    } else if (!m_inbound->ready.wait_for(lock, m_timeout, arrived)) {
      throw TransportTimedOut("nothing arrived within the timeout");
    }
    if (m_inbound->frames.empty()) {
      throw TransportClosed("peer closed the connection");
    }
    payload = std::move(m_inbound->frames.front());
    m_inbound->frames.pop_front();
    if (payload.size() > maxIncomingFrameBytes()) {
      wipe(payload);
      throw MalformedFrame("incoming frame over the size limit");
    }
  }

  void setTimeout(std::chrono::milliseconds timeout) override { m_timeout = timeout; }

  void shutdown() noexcept override {
    for (const auto& channel : {m_inbound, m_outbound}) {
      std::lock_guard lock(channel->mutex);
      channel->closed = true;
      channel->ready.notify_all();
    }
  }

 private:
  std::shared_ptr<Channel> m_inbound;
  std::shared_ptr<Channel> m_outbound;
  std::chrono::milliseconds m_timeout{0};
};

}  // namespace

std::pair<std::unique_ptr<Transport>, std::unique_ptr<Transport>> makeMemoryTransportPair() {
  auto aToB = std::make_shared<Channel>();
  auto bToA = std::make_shared<Channel>();
  return {std::make_unique<MemoryTransport>(bToA, aToB), std::make_unique<MemoryTransport>(aToB, bToA)};
}

}  // namespace dojang::wire
