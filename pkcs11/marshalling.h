// The C structures of the PKCS#11 API in their wire form, and the two-call conventions by which
// results go back to the caller. Shared by the files that define Frontend's function groups.
#pragma once

#include <algorithm>
#include <vector>

#include "src/common/cryptoki/cryptoki.h"
#include "src/common/wire/calls.h"

namespace dojang::frontend {

// The first message on every connection: a random client id, this process's id and its name.
wire::HelloRequest makeHello();

// Copies a caller's template for the wire, refusing what cannot cross a process boundary and
// what the token could read two ways (a type given twice).
CK_RV toWireTemplate(const CK_ATTRIBUTE* templ, CK_ULONG count, std::vector<wire::Attribute>& out);

// Leaves no copy of a template's values (an imported key, say) behind.
void wipeTemplate(std::vector<wire::Attribute>& templ);

// Converts a caller's CK_MECHANISM into its wire form; false for malformed parameters.
bool toWireMechanism(const CK_MECHANISM& in, wire::Mechanism& out);

// A list result with the two-call convention: a NULL array asks for the count, a short one gets
// CKR_BUFFER_TOO_SMALL with the count needed.
template <class Item, class Convert, class Out>
CK_RV copyOut(const std::vector<Item>& items, Convert convert, Out* out, CK_ULONG_PTR count) {
  if (out != nullptr) {
    if (*count < items.size()) {
      *count = items.size();
      return CKR_BUFFER_TOO_SMALL;
    }
    std::transform(items.begin(), items.end(), out, convert);
  }
  *count = items.size();
  return CKR_OK;
}

// Copies a result out with the two-call convention: a NULL buffer asks for the size, a small
// buffer gets CKR_BUFFER_TOO_SMALL; both keep the result for the next call.
CK_RV deliver(const wire::Bytes& result, CK_BYTE_PTR out, CK_ULONG_PTR outLength, bool& done);

}  // namespace dojang::frontend
