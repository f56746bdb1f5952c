// Service::attach: a client id is not a bearer token. It belongs to the process (kernel pid and
// start time) whose connection made the client; the same id from any other process is refused.
#include <catch2/catch.hpp>

#include <memory>
#include <vector>

#include "src/common/errors/error.h"
#include "src/daemon/service.h"
#include "src/daemon/slot_table.h"

namespace core = dojang::daemon;
namespace wire = dojang::wire;

namespace {

wire::HelloRequest helloWithId(std::uint8_t fill) {
  wire::HelloRequest hello;
  hello.clientId = wire::Bytes(16, fill);
  hello.pid = 999;  // what the client claims; the daemon goes by the kernel's word
  hello.program = "client-a";
  return hello;
}

CK_RV attachRv(core::Service& service, const wire::HelloRequest& hello, const core::PeerProcess& peer) {
  try {
    const auto client = service.attach(hello, peer);
    service.detach(client);
    return CKR_OK;
  } catch (const dojang::Error& error) {
    return error.rv();
  }
}

}  // namespace

TEST_CASE("a client id is bound to the process that made the client", "[service][clients]") {
  core::SlotTable slots({});
  core::Service service(slots, {});
  const auto hello = helloWithId(0xA1);
  const core::PeerProcess owner{4242, 777};

  auto client = service.attach(hello, owner);
  const auto number = client->number();
  CHECK(client->pid() == 4242);

  SECTION("the same process attaches more connections to the same client") {
    const auto pooled = service.attach(hello, owner);
    CHECK(pooled == client);
    service.detach(pooled);
  }
  SECTION("another pid is refused") {
    CHECK(dojang::ckRvName(attachRv(service, hello, {4243, 777})) == dojang::ckRvName(CKR_GENERAL_ERROR));
  }
  SECTION("the same pid with another start time (a recycled pid) is refused") {
    CHECK(dojang::ckRvName(attachRv(service, hello, {4242, 778})) == dojang::ckRvName(CKR_GENERAL_ERROR));
  }
  SECTION("another process with its own id is a client of its own") {
    const auto other = service.attach(helloWithId(0xB2), {4243, 777});
    CHECK(other != client);
    service.detach(other);
  }
  service.detach(client);
  client.reset();

  SECTION("once the client is gone its id may be used again") {
    const auto again = service.attach(hello, {5000, 1});
    CHECK(again->number() != number);
    service.detach(again);
  }
}
