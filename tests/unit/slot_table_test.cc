// SlotTable over fake drivers: stable slot IDs, tokens coming and going, and the slot events
// clients wait for.
#include <catch2/catch.hpp>
#include <chrono>
#include <future>
#include <thread>

#include "src/common/errors/error.h"
#include "src/daemon/slot_table.h"
#include "tests/unit/fake_token.h"

namespace core = dojang::daemon;
namespace test = dojang::test;

namespace {

using Ids = std::vector<std::uint64_t>;
using std::chrono::milliseconds;

// A table over one fake driver whose slots the test controls.
struct OneDriver {
  std::shared_ptr<test::FakeDriverState> state = std::make_shared<test::FakeDriverState>();
  std::unique_ptr<core::SlotTable> table;

  void start() {
    std::vector<std::unique_ptr<dojang::token::Driver>> drivers;
    drivers.push_back(std::make_unique<test::FakeDriver>(state));
    table = std::make_unique<core::SlotTable>(std::move(drivers));
    table->rescan();
  }
};

CK_RV rvOf(const std::function<void()>& call) {
  try {
    call();
  } catch (const dojang::Error& error) {
    return error.rv();
  }
  return CKR_OK;
}

// Every event after `cursor`, without waiting.
Ids drainEvents(core::SlotTable& table, std::uint64_t& cursor) {
  Ids slots;
  while (auto slot = table.nextEvent(cursor, milliseconds(0))) {
    slots.push_back(*slot);
  }
  return slots;
}

}  // namespace

TEST_CASE("slot IDs are numbered from 1 and stable across rescans", "[slots]") {
  OneDriver fixture;
  fixture.state->addSlot("a");
  fixture.state->addSlot("b");
  fixture.start();
  CHECK(fixture.table->slotIds(false) == Ids{1, 2});
  CHECK(fixture.table->slotIds(true) == Ids{1, 2});
  CHECK(fixture.table->tokenIn(1)->description().label == "token a");
  CHECK(fixture.table->tokenIn(2)->description().label == "token b");
  CHECK(fixture.table->slotDescription(2).description == "fake slot b");

  const auto tokenA = fixture.table->tokenIn(1);
  for (int i = 0; i < 3; ++i) {
    fixture.table->rescan();
  }
  CHECK(fixture.table->slotIds(false) == Ids{1, 2});
  CHECK(fixture.table->tokenIn(1) == tokenA);  // an unchanged token is not reopened
  CHECK(fixture.state->openCalls == 2);

  SECTION("the driver reporting its slots in another order changes nothing") {
    std::lock_guard lock(fixture.state->mutex);
    std::reverse(fixture.state->slots.begin(), fixture.state->slots.end());
  }
  fixture.table->rescan();
  CHECK(fixture.table->tokenIn(1)->description().label == "token a");
  CHECK(fixture.table->tokenIn(2)->description().label == "token b");
}

TEST_CASE("unknown slot IDs and empty slots are errors with the right CK_RV", "[slots]") {
  OneDriver fixture;
  fixture.state->addSlot("a", false);
  fixture.start();
  CHECK(fixture.table->slotIds(false) == Ids{1});
  CHECK(fixture.table->slotIds(true).empty());
  CHECK(rvOf([&] { (void)fixture.table->tokenIn(1); }) == CKR_TOKEN_NOT_PRESENT);
  CHECK(rvOf([&] { (void)fixture.table->tokenIn(0); }) == CKR_SLOT_ID_INVALID);
  CHECK(rvOf([&] { (void)fixture.table->tokenIn(2); }) == CKR_SLOT_ID_INVALID);
  CHECK(rvOf([&] { (void)fixture.table->slotDescription(0); }) == CKR_SLOT_ID_INVALID);
  CHECK(rvOf([&] { (void)fixture.table->slotDescription(99); }) == CKR_SLOT_ID_INVALID);
  CHECK((fixture.table->slotDescription(1).flags & CKF_TOKEN_PRESENT) == 0);
}

TEST_CASE("tokens appear and vanish; slot IDs stay and the list never shrinks", "[slots]") {
  OneDriver fixture;
  fixture.state->addSlot("a");
  fixture.state->addSlot("b", false);
  fixture.start();
  CHECK(fixture.table->slotIds(false) == Ids{1, 2});
  CHECK(fixture.table->slotIds(true) == Ids{1});

  fixture.state->setTokenPresent("b", true);
  fixture.table->rescan();
  CHECK(fixture.table->slotIds(true) == Ids{1, 2});
  CHECK((fixture.table->slotDescription(2).flags & CKF_TOKEN_PRESENT) != 0);

  const auto tokenA = fixture.table->tokenIn(1);
  fixture.state->setTokenPresent("a", false);
  fixture.table->rescan();
  CHECK(tokenA->removed());  // sessions on it now fail with CKR_DEVICE_REMOVED
  CHECK(fixture.table->slotIds(false) == Ids{1, 2});
  CHECK(fixture.table->slotIds(true) == Ids{2});
  CHECK(rvOf([&] { (void)fixture.table->tokenIn(1); }) == CKR_TOKEN_NOT_PRESENT);

  fixture.state->addSlot("c");
  fixture.table->rescan();
  CHECK(fixture.table->slotIds(false) == Ids{1, 2, 3});
  CHECK(fixture.table->tokenIn(3)->description().label == "token c");

  fixture.state->setTokenPresent("a", true);
  fixture.table->rescan();
  const auto tokenAgain = fixture.table->tokenIn(1);
  CHECK(tokenAgain != tokenA);  // a reinserted token is a new TokenState
  CHECK_FALSE(tokenAgain->removed());
  CHECK(fixture.table->slotIds(true) == Ids{1, 2, 3});
}

TEST_CASE("slots a driver stops reporting lose their token but stay listed", "[slots]") {
  OneDriver fixture;
  fixture.state->addSlot("reader-1");
  fixture.state->addSlot("reader-2");
  fixture.start();
  const auto first = fixture.table->tokenIn(1);

  fixture.state->removeSlot("reader-1");
  fixture.table->rescan();
  CHECK(fixture.table->slotIds(false) == Ids{1, 2});
  CHECK(fixture.table->slotIds(true) == Ids{2});
  CHECK(first->removed());
  CHECK((fixture.table->slotDescription(1).flags & CKF_TOKEN_PRESENT) == 0);
  CHECK(fixture.table->slotDescription(1).description == "fake slot reader-1");
  CHECK(rvOf([&] { (void)fixture.table->tokenIn(1); }) == CKR_TOKEN_NOT_PRESENT);

  SECTION("and get the same ID back when the driver reports them again") {
    fixture.state->addSlot("reader-1");
    fixture.table->rescan();
    CHECK(fixture.table->slotIds(false) == Ids{1, 2});
    CHECK(fixture.table->slotIds(true) == Ids{1, 2});
    CHECK(fixture.table->tokenIn(1)->description().label == "token reader-1");
  }
  SECTION("a new slot after that gets a new ID") {
    fixture.state->addSlot("reader-3");
    fixture.table->rescan();
    CHECK(fixture.table->slotIds(false) == Ids{1, 2, 3});
  }
}

TEST_CASE("each driver's slots are numbered apart, even with equal keys", "[slots]") {
  auto one = std::make_shared<test::FakeDriverState>();
  auto two = std::make_shared<test::FakeDriverState>();
  one->addSlot("0")->label = "first driver";
  two->addSlot("0")->label = "second driver";
  std::vector<std::unique_ptr<dojang::token::Driver>> drivers;
  drivers.push_back(std::make_unique<test::FakeDriver>(one, "one"));
  drivers.push_back(std::make_unique<test::FakeDriver>(two, "two"));
  core::SlotTable table(std::move(drivers));
  table.rescan();
  CHECK(table.slotIds(true) == Ids{1, 2});
  CHECK(table.tokenIn(1)->description().label == "first driver");
  CHECK(table.tokenIn(2)->description().label == "second driver");
  const auto status = table.status();
  REQUIRE(status.size() == 2);
  CHECK(status[0].backend == "one");
  CHECK(status[1].backend == "two");
  CHECK(status[1].tokenPresent);
  CHECK(status[1].tokenLabel == "second driver");

  one->removeSlot("0");
  table.rescan();
  CHECK(table.slotIds(true) == Ids{2});
}

TEST_CASE("slot events are queued and delivered to each cursor", "[slots][events]") {
  OneDriver fixture;
  fixture.state->addSlot("a");
  fixture.state->addSlot("b", false);
  fixture.start();

  SECTION("tokens found at start-up are events for a cursor from before") {
    std::uint64_t fromStart = 0;
    CHECK(drainEvents(*fixture.table, fromStart) == Ids{1});
  }

  std::uint64_t alice = fixture.table->eventCursor();
  CHECK(drainEvents(*fixture.table, alice).empty());  // a new cursor sees only what comes next

  fixture.state->setTokenPresent("b", true);
  fixture.table->rescan();
  fixture.table->rescan();  // nothing changed: no event
  std::uint64_t bob = fixture.table->eventCursor();
  fixture.state->setTokenPresent("a", false);
  fixture.table->rescan();
  fixture.state->removeSlot("b");
  fixture.table->rescan();

  CHECK(drainEvents(*fixture.table, alice) == Ids{2, 1, 2});
  CHECK(drainEvents(*fixture.table, bob) == Ids{1, 2});
  CHECK(drainEvents(*fixture.table, alice).empty());

  fixture.state->setTokenPresent("a", true);
  fixture.table->rescan();
  CHECK(fixture.table->nextEvent(alice, milliseconds(0)) == std::optional<std::uint64_t>(1));
  CHECK(fixture.table->nextEvent(bob, milliseconds(0)) == std::optional<std::uint64_t>(1));
}

TEST_CASE("nextEvent waits, and times out when nothing happens", "[slots][events]") {
  OneDriver fixture;
  fixture.state->addSlot("a");
  fixture.start();
  std::uint64_t cursor = fixture.table->eventCursor();

  SECTION("times out") {
    const auto started = std::chrono::steady_clock::now();
    CHECK_FALSE(fixture.table->nextEvent(cursor, milliseconds(150)).has_value());
    const auto waited = std::chrono::steady_clock::now() - started;
    CHECK(waited >= milliseconds(140));
    CHECK(waited < milliseconds(3000));
  }
  SECTION("returns at once without a wait") {
    const auto started = std::chrono::steady_clock::now();
    CHECK_FALSE(fixture.table->nextEvent(cursor, milliseconds(0)).has_value());
    CHECK(std::chrono::steady_clock::now() - started < milliseconds(100));
  }
  SECTION("wakes when an event arrives") {
    auto waiter = std::async(std::launch::async, [&] { return fixture.table->nextEvent(cursor, milliseconds(10000)); });
    std::this_thread::sleep_for(milliseconds(50));
    const auto started = std::chrono::steady_clock::now();
    fixture.state->setTokenPresent("a", false);
    fixture.table->rescan();
    REQUIRE(waiter.wait_for(milliseconds(5000)) == std::future_status::ready);
    CHECK(waiter.get() == std::optional<std::uint64_t>(1));
    CHECK(std::chrono::steady_clock::now() - started < milliseconds(5000));
  }
}

TEST_CASE("a token that cannot be opened leaves its slot listed and empty", "[slots]") {
  OneDriver fixture;
  fixture.state->addSlot("a");
  fixture.state->addSlot("broken");
  fixture.state->unopenable.insert("broken");
  fixture.start();
  CHECK(fixture.table->slotIds(false) == Ids{1, 2});
  CHECK(fixture.table->slotIds(true) == Ids{1});
  CHECK(rvOf([&] { (void)fixture.table->tokenIn(2); }) == CKR_TOKEN_NOT_PRESENT);

  // The next rescan tries again.
  fixture.state->unopenable.clear();
  fixture.table->rescan();
  CHECK(fixture.table->slotIds(true) == Ids{1, 2});
}
