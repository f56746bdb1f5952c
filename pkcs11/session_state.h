// What the module keeps for each session it opened: the operations in progress, the find, and
// the attribute reply kept for the read that follows a size query.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

#include "src/common/cryptoki/cryptoki.h"
#include "src/common/cryptoki/operation_kind.h"
#include "src/common/wire/types.h"

namespace dojang::frontend {

// One kind of operation (sign, verify, decrypt, digest) from its Init to the call that ends it.
struct OperationState {
  bool active = false;
  bool updated = false;  // C_xxxUpdate was used: single-part calls are now wrong
  wire::Mechanism mechanism;
  std::uint64_t key = 0;
  wire::Bytes data;
  bool haveResult = false;
  bool resultIsSinglePart = false;  // which call made the result: only that call may fetch it
  wire::Bytes result;  // kept between a size query and the call that fetches it
  void end() noexcept;
};

// The reply to a C_GetAttributeValue size query, kept for the read that follows it, so that
// the two-call convention costs one round trip. Any other call on the session drops it, and
// so does any write, login or logout in the process (a newer generation).
struct KeptAttributes {
  bool valid = false;
  std::uint64_t object = 0;
  std::vector<std::uint64_t> types;
  std::vector<wire::AttributeResult> attributes;
  std::uint64_t generation = 0;
};

// One session this process opened, found by its handle; `mutex` serialises its operations.
struct SessionState {
  CK_SLOT_ID slot = 0;
  CK_FLAGS flags = 0;
  OperationState operations[kOperationKindCount];
  bool findActive = false;
  std::vector<std::uint64_t> found;
  std::size_t nextFound = 0;
  std::mutex mutex;
  std::mutex keptMutex;  // guards kept alone; nothing else is locked while holding it
  KeptAttributes kept;
};

}  // namespace dojang::frontend
