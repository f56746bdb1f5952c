// Test hooks: protocol tests drive the real entry points over an in-memory transport.
#pragma once

#include "pkcs11/connection_pool.h"
#include "src/common/cryptoki/cryptoki.h"

namespace dojang::frontend {

// Makes the next C_Initialize connect through `connector` instead of the daemon's socket.
void setConnectorForTesting(Connector connector);
CK_FUNCTION_LIST* functionListForTesting();
// Lets the next protocol mismatch be reported again (it is reported once per process).
void resetMismatchReportForTesting();

}  // namespace dojang::frontend
