// The renewal scheduler's decisions (src/daemon/scheduler/renewal_decision.h): notices, the
// window, the fee ceiling and the backoff, without tokens, clocks or a CA.
#include "src/daemon/scheduler/renewal_decision.h"

#include <catch2/catch.hpp>

namespace core = dojang::daemon;

namespace {

using std::chrono::hours;
using std::chrono::seconds;

constexpr auto kDay = hours(24);
const core::SystemTime kNow = core::SystemTime(seconds(1'750'000'000));

// A certificate with `left` until expiry and a 30-day window, automatic with a free fee.
core::DecisionInput inputWith(std::chrono::seconds left) {
  core::DecisionInput input;
  input.now = kNow;
  input.notAfter = kNow + left;
  input.notBefore = input.notAfter - 365 * kDay;
  input.windowOpens = input.notAfter - 30 * kDay;
  input.notifyDays = {30, 7, 3, 1};
  input.automatic = true;
  input.feeKrw = 0;
  input.maxFeeKrw = 0;
  input.retry = {seconds(300), hours(6)};
  return input;
}

}  // namespace

TEST_CASE("days left round down, and count negative once expired", "[scheduler]") {
  CHECK(core::daysLeft(kNow, kNow + 20 * kDay + hours(23)) == 20);
  CHECK(core::daysLeft(kNow, kNow + hours(1)) == 0);
  CHECK(core::daysLeft(kNow, kNow - hours(1)) == -1);
}

TEST_CASE("inside the window with automatic renewal and a fee within the ceiling: renew", "[scheduler]") {
  const auto decision = core::decide(inputWith(20 * kDay));
  CHECK(decision.action == core::Action::Renew);
}

TEST_CASE("never a renewal before the window opens nor after expiry", "[scheduler]") {
  CHECK(core::decide(inputWith(31 * kDay)).action == core::Action::None);
  CHECK(core::decide(inputWith(seconds(0))).action == core::Action::None);
  CHECK(core::decide(inputWith(-kDay)).action == core::Action::None);
  auto retrying = inputWith(-hours(1));
  retrying.failures = 3;
  retrying.lastFailure = kNow - hours(2);
  CHECK(core::decide(retrying).action == core::Action::None);
}

TEST_CASE("notices: the most urgent threshold reached, once", "[scheduler]") {
  auto input = inputWith(40 * kDay);
  CHECK(!core::decide(input).notifyDays);
  input = inputWith(25 * kDay);
  input.automatic = false;
  CHECK(core::decide(input).action == core::Action::None);
  CHECK(core::decide(input).notifyDays == 30);
  input.notifiedDays = 30;
  CHECK(!core::decide(input).notifyDays);
  input.notAfter = kNow + 5 * kDay;
  CHECK(core::decide(input).notifyDays == 7);
  input.notAfter = kNow + hours(2);  // first seen on its last day: one notice, for 1
  input.notifiedDays.reset();
  CHECK(core::decide(input).notifyDays == 1);
  input.notifiedDays = 1;
  CHECK(!core::decide(input).notifyDays);
}

TEST_CASE("a paid profile above the ceiling, or an unknown one, only notifies", "[scheduler]") {
  auto input = inputWith(20 * kDay);
  input.feeKrw = 4400;
  input.maxFeeKrw = 4000;
  auto decision = core::decide(input);
  CHECK(decision.action == core::Action::FeeTooHigh);
  CHECK(decision.notifyDays == 30);
  CHECK_THAT(decision.reason, Catch::Contains("4400 KRW is above max_fee_krw = 4000"));
  input.maxFeeKrw = 4400;
  CHECK(core::decide(input).action == core::Action::Renew);
  input.feeKrw.reset();
  CHECK(core::decide(input).action == core::Action::FeeTooHigh);
}

TEST_CASE("automatic renewal off: notices only", "[scheduler]") {
  auto input = inputWith(20 * kDay);
  input.automatic = false;
  CHECK(core::decide(input).action == core::Action::None);
}

TEST_CASE("a retryable failure waits with exponential backoff, then renews", "[scheduler]") {
  auto input = inputWith(20 * kDay);
  input.failures = 1;
  input.lastFailure = kNow - seconds(100);
  auto decision = core::decide(input);
  REQUIRE(decision.action == core::Action::RetryLater);
  CHECK(decision.retryAt == *input.lastFailure + seconds(300));
  input.failures = 3;
  CHECK(core::decide(input).retryAt == *input.lastFailure + seconds(1200));
  input.failures = 30;
  CHECK(core::decide(input).retryAt == *input.lastFailure + hours(6));
  input.failures = 1;
  input.lastFailure = kNow - seconds(300);
  CHECK(core::decide(input).action == core::Action::Renew);
}

TEST_CASE("the backoff shortens as expiry nears", "[scheduler]") {
  const core::RetryPolicy policy{seconds(300), hours(6)};
  CHECK(core::retryDelay(10, 20 * kDay, policy) == hours(6));
  CHECK(core::retryDelay(10, kDay, policy) == seconds(8640));
  CHECK(core::retryDelay(10, hours(1), policy) == seconds(360));
  CHECK(core::retryDelay(10, seconds(20), policy) == seconds(2));
  CHECK(core::retryDelay(10, seconds(5), policy) == seconds(1));
  for (auto left = 20 * kDay; left > hours(1); left /= 2) {
    CHECK(core::retryDelay(10, left / 2, policy) <= core::retryDelay(10, left, policy));
  }
  auto input = inputWith(hours(10));
  input.failures = 20;
  input.lastFailure = kNow;
  CHECK(core::decide(input).retryAt == *input.lastFailure + hours(1));
}

TEST_CASE("a failure that is not retried stops automatic renewal", "[scheduler]") {
  auto input = inputWith(20 * kDay);
  input.stopped = true;
  const auto decision = core::decide(input);
  CHECK(decision.action == core::Action::Stopped);
  CHECK(decision.notifyDays == 30);
}

TEST_CASE("a certificate dojang renewed is not renewed again before half its lifetime", "[scheduler]") {
  // A CA issuing 20-day certificates with a 30-day window: the new one is due at once.
  auto fresh = inputWith(20 * kDay);
  fresh.notBefore = kNow - hours(1);
  fresh.installedByRenewalAt = kNow - hours(1);
  const auto held = core::decide(fresh);
  CHECK(held.action == core::Action::Hold);
  CHECK(held.reason.find("shorter than the window") != std::string::npos);
  // Notices still go out.
  CHECK(held.notifyDays == 30);
  // Half its life later it is renewed as usual.
  fresh.now = kNow + 11 * kDay;
  CHECK(core::decide(fresh).action == core::Action::Renew);
  // The same certificate from elsewhere (not in the journal) is renewed at once.
  auto enrolled = inputWith(20 * kDay);
  enrolled.notBefore = kNow - hours(1);
  CHECK(core::decide(enrolled).action == core::Action::Renew);
}
