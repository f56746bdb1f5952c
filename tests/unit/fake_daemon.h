// The daemon core (slot table and Service) over one fake token in slot 1, with clients made
// directly instead of through connections, and no monitor threads: whatever rescans happen are
// started by the calls themselves. For unit tests of Service and of the driver interface.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "src/common/errors/error.h"
#include "src/daemon/service.h"
#include "src/daemon/slot_table.h"
#include "tests/unit/fake_token.h"

namespace dojang::test {

// The CK_RV a daemon call ends with (CKR_OK when it returns).
inline CK_RV rvOf(const std::function<void()>& call) {
  try {
    call();
  } catch (const dojang::Error& error) {
    return error.rv();
  }
  return CKR_OK;
}

class FakeDaemon {
 public:
  static constexpr std::uint64_t kFakeSlot = 1;

  explicit FakeDaemon(std::string program) : m_program(std::move(program)) {
    std::vector<std::unique_ptr<token::Driver>> drivers;
    drivers.push_back(std::make_unique<FakeDriver>(driver));
    slots = std::make_unique<daemon::SlotTable>(std::move(drivers));
    slots->rescan();
    service = std::make_unique<daemon::Service>(*slots, std::vector<wire::BackendStatus>{});
  }

  // A client as Service::attach makes one for a Hello, from a process of its own.
  daemon::CallContext client() {
    const auto number = m_nextClient++;
    auto made = std::make_shared<daemon::Client>(number, wire::Bytes(16, static_cast<std::uint8_t>(number)),
                                                 m_program,
                                                 daemon::PeerProcess{static_cast<std::uint32_t>(1000 + number), 1},
                                                 slots->eventCursor());
    return {std::move(made), {}, {}};
  }

  std::uint64_t open(daemon::CallContext& context, std::uint64_t flags = CKF_SERIAL_SESSION | CKF_RW_SESSION) {
    wire::OpenSessionReply out;
    service->OpenSession(context, {kFakeSlot, flags}, out);
    return out.session;
  }

  std::shared_ptr<FakeDriverState> driver = std::make_shared<FakeDriverState>();
  std::shared_ptr<FakeTokenState> fake = driver->addSlot("a");
  std::unique_ptr<daemon::SlotTable> slots;
  std::unique_ptr<daemon::Service> service;

 private:
  std::string m_program;
  daemon::ClientNumber m_nextClient = 1;
};

}  // namespace dojang::test
