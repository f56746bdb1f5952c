// Talks to dojangd over the wire protocol directly (not through PKCS#11), for `dojang status`.
#pragma once

#include <string>

#include "src/common/wire/calls.h"
#include "src/common/wire/client_call.h"

namespace dojang::cli {

// Nothing is listening on the socket: dojangd is not running (or runs for another user).
using wire::DaemonUnreachable;

struct DaemonStatus {
  wire::HelloReply hello;
  wire::DaemonStatusReply status;
};

// Connects, says Hello (random client id, our pid, program "dojang"), asks DaemonStatus.
// Throws DaemonUnreachable when the connection cannot be made, dojang::Error when the daemon
// answers with a failure or when the conversation breaks (throwTransportFailure).
[[nodiscard]] DaemonStatus queryDaemonStatus(const std::string& socketPath);

}  // namespace dojang::cli
