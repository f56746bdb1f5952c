// Wire types into the driver interface's types, for Service's handlers. Nothing here decides
// anything: policy is TokenAccess's.
#pragma once

#include <vector>

#include "drivers/token/token.h"
#include "src/common/wire/calls.h"

namespace dojang::daemon {

token::AttributeList toAttributes(const std::vector<wire::Attribute>& in);
// Throws CKR_MECHANISM_PARAM_INVALID for a parameter kind the wire does not define.
token::Mechanism toMechanism(const wire::Mechanism& in);
// Zeroes every value in place (a template may carry a key being imported).
void wipeAttributes(token::AttributeList& list) noexcept;

// Wipes a template's values when it goes out of scope, whichever way the call ends.
class WipedOnExit final {
 public:
  explicit WipedOnExit(token::AttributeList& list) : m_list(list) {}
  WipedOnExit(const WipedOnExit&) = delete;
  WipedOnExit& operator=(const WipedOnExit&) = delete;
  ~WipedOnExit() { wipeAttributes(m_list); }

 private:
  token::AttributeList& m_list;
};

}  // namespace dojang::daemon
