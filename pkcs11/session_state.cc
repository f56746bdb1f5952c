#include "pkcs11/session_state.h"

#include "src/common/wire/codec.h"

namespace dojang::frontend {

void OperationState::end() noexcept {
  active = false;
  updated = false;
  haveResult = false;
  resultIsSinglePart = false;
  wire::wipe(data);
  data.clear();
  wire::wipe(result);
  result.clear();
}

}  // namespace dojang::frontend
