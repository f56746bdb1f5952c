// PKCS#11's two-call convention for lists (2.40 section 5.2), for C_GetSlotList and
// C_GetMechanismList callers: one loop, kept here.
#pragma once

#include <vector>

#include "src/common/cryptoki/cryptoki.h"

namespace dojang {

// A NULL array asks for the count, then a second call fills the array. The count can grow in
// between (a reader plugged in), which the second call answers with CKR_BUFFER_TOO_SMALL; then
// both calls are made again, a few times at most. `call(Item* items, CK_ULONG* count)` makes one
// call and returns its CK_RV; the result is the last CK_RV, and `items` holds the list when it
// is CKR_OK.
template <class Item, class Call>
[[nodiscard]] CK_RV readTwoCallList(std::vector<Item>& items, Call&& call) {
  constexpr int kAttempts = 4;
  CK_RV rv = CKR_OK;
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    CK_ULONG count = 0;
    rv = call(static_cast<Item*>(nullptr), &count);
    if (rv != CKR_OK) {
      items.clear();
      return rv;
    }
    items.resize(count);
    if (count == 0) {
      return CKR_OK;
    }
    rv = call(items.data(), &count);
    if (rv == CKR_BUFFER_TOO_SMALL) {
      continue;
    }
    if (rv == CKR_OK) {
      items.resize(count);
    }
    return rv;
  }
  return rv;
}

}  // namespace dojang
