// What the renewal scheduler does about one certificate at one moment, as a pure function of what
// it knows: so that every rule (notices, the window, the fee ceiling, backoff) is unit-tested
// without tokens, clocks or a CA.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace dojang::daemon {

using SystemTime = std::chrono::system_clock::time_point;

struct RetryPolicy {
  std::chrono::seconds initial{300};  // after the first retryable failure; doubles each time
  std::chrono::seconds max{6 * 3600};
};

struct DecisionInput {
  SystemTime now;
  SystemTime notBefore;
  SystemTime notAfter;
  SystemTime windowOpens;           // the CA accepts a renewal from then until notAfter
  std::vector<int> notifyDays;      // thresholds, any order
  std::optional<int> notifiedDays;  // the smallest threshold already noticed, if any
  bool automatic = false;           // a [[renewal.auto]] rule names the certificate or its profile
  std::optional<long long> feeKrw;  // the CA's fee; nullopt: the profile is unknown
  long long maxFeeKrw = 0;          // the rule's ceiling
  int failures = 0;                 // retryable failures since the last success
  std::optional<SystemTime> lastFailure;
  bool stopped = false;  // the last failure is not retried (wrong PIN, refusal)
  RetryPolicy retry;
  // When dojang itself installed this certificate by a renewal (from the journal), if it did.
  std::optional<SystemTime> installedByRenewalAt;
};

enum class Action {
  None,        // nothing to do: outside the window, expired, or not automatic
  Renew,       // start the renewal now
  RetryLater,  // the CA was unreachable: again at Decision::retryAt
  FeeTooHigh,  // automatic, but the fee is unknown or above the ceiling: notices only
  Hold,        // automatic, but the certificate is a fresh renewal already inside the window
  Stopped,     // a failure that is not retried automatically
};

struct Decision {
  Action action = Action::None;
  // A notice is due for this threshold; sent (and remembered) unless a renewal starts instead.
  std::optional<int> notifyDays;
  std::optional<SystemTime> retryAt;
  std::string reason;  // for the log and `dojang status`
};

// Whole days left, rounded down (negative once expired), as certificate summaries count them.
[[nodiscard]] long long daysLeft(SystemTime now, SystemTime notAfter);
// The wait before retry number `failures` (1 = after the first failure): exponential, at most
// policy.max, and at most a tenth of the time left, so that it shortens as expiry nears.
[[nodiscard]] std::chrono::seconds retryDelay(int failures, std::chrono::seconds timeLeft,
                                              const RetryPolicy& policy);
[[nodiscard]] Decision decide(const DecisionInput& input);

}  // namespace dojang::daemon
