// Turns one request payload into one reply frame, through the wire table. Never throws for
// anything a client can send: malformed input becomes an error reply.
#pragma once

#include <span>

#include "src/common/wire/calls.h"
#include "src/daemon/service.h"

namespace dojang::daemon {

// Decodes the call, runs it on the service, encodes the reply into `frame`.
void dispatch(Service& service, CallContext& context, std::span<const std::uint8_t> payload,
              wire::Bytes& frame);

}  // namespace dojang::daemon
