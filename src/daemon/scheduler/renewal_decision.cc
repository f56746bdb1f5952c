#include "src/daemon/scheduler/renewal_decision.h"

#include <algorithm>

namespace dojang::daemon {

namespace {

// The most urgent threshold reached and not yet noticed: a certificate first seen 5 days before
// expiry gets one notice (for 7), not three.
std::optional<int> dueNotice(const DecisionInput& input, long long left) {
  std::optional<int> due;
  for (const int threshold : input.notifyDays) {
    if (left <= threshold && (!input.notifiedDays || threshold < *input.notifiedDays) &&
        (!due || threshold < *due)) {
      due = threshold;
    }
  }
  return due;
}

}  // namespace

long long daysLeft(SystemTime now, SystemTime notAfter) {
  const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(notAfter - now).count();
  constexpr long long kDay = 86400;
  return seconds >= 0 ? seconds / kDay : -((-seconds + kDay - 1) / kDay);
}

std::chrono::seconds retryDelay(int failures, std::chrono::seconds timeLeft, const RetryPolicy& policy) {
  std::chrono::seconds delay = policy.initial;
  for (int i = 1; i < failures && delay < policy.max; ++i) {
    delay *= 2;
  }
  delay = std::min({delay, policy.max, timeLeft / 10});
  return std::max(delay, std::chrono::seconds(1));
}

Decision decide(const DecisionInput& input) {
  Decision decision;
  const long long left = daysLeft(input.now, input.notAfter);
  decision.notifyDays = dueNotice(input, left);
  if (input.now >= input.notAfter) {
    decision.reason = "expired: renewal is no longer possible, a new certificate is needed";
    return decision;
  }
  if (input.now < input.windowOpens) {
    decision.reason = "the renewal window has not opened";
    return decision;
  }
  if (!input.automatic) {
    decision.reason = "automatic renewal is off: renew with `dojang renew`";
    return decision;
  }
  if (!input.feeKrw) {
    decision.action = Action::FeeTooHigh;
    decision.reason = "the certificate's profile is unknown, so its fee is: renew with `dojang renew`";
    return decision;
  }
  if (*input.feeKrw > input.maxFeeKrw) {
    decision.action = Action::FeeTooHigh;
    decision.reason = "the CA's fee of " + std::to_string(*input.feeKrw) +
                      " KRW is above max_fee_krw = " + std::to_string(input.maxFeeKrw) +
                      ": renew with `dojang renew`";
    return decision;
  }
  // A CA that issues certificates shorter-lived than the window would make every renewal due at
  // once again, and charge its fee each time: a certificate dojang renewed waits for half its
  // lifetime before the next automatic renewal.
  if (input.installedByRenewalAt && input.now < input.notBefore + (input.notAfter - input.notBefore) / 2) {
    decision.action = Action::Hold;
    decision.reason =
        "renewed by dojang, yet already inside the renewal window: its validity is shorter than the window; "
        "automatic renewal waits until half of it has passed (renew by hand with `dojang renew`)";
    return decision;
  }
  if (input.stopped) {
    decision.action = Action::Stopped;
    decision.reason = "the last automatic renewal failed and is not retried: renew with `dojang renew`";
    return decision;
  }
  if (input.failures > 0 && input.lastFailure) {
    const auto timeLeft =
        std::chrono::duration_cast<std::chrono::seconds>(input.notAfter - *input.lastFailure);
    const auto at = *input.lastFailure + retryDelay(input.failures, timeLeft, input.retry);
    if (at > input.now) {
      decision.action = Action::RetryLater;
      decision.retryAt = at;
      decision.reason = "the CA was unreachable (" + std::to_string(input.failures) + " attempts)";
      return decision;
    }
  }
  decision.action = Action::Renew;
  decision.reason = "inside the renewal window, automatic renewal on";
  return decision;
}

}  // namespace dojang::daemon
