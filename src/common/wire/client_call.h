// The client's side of a call, shared by dojang-pkcs11.so's connection pool and the dojang CLI.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

#include "src/common/wire/calls.h"
#include "src/common/wire/codec.h"
#include "src/common/wire/transport.h"

namespace dojang::wire {

// The daemon could not be reached (or started). `socketPath` says where it was looked for, when
// the caller knows.
class DaemonUnreachable final : public std::runtime_error {
 public:
  explicit DaemonUnreachable(const std::string& message, std::string socketPath = {})
      : std::runtime_error(message), m_socketPath(std::move(socketPath)) {}
  [[nodiscard]] const std::string& socketPath() const noexcept { return m_socketPath; }

 private:
  std::string m_socketPath;
};

// Replaces `payload` with the next reply's, skipping keepalives (a reply frame with nothing but
// the reserved CK_RV kReplyStillWorking).
inline void receiveReply(Transport& transport, Bytes& payload) {
  for (;;) {
    transport.receive(payload);
    if (payload.size() != sizeof(std::uint64_t)) {
      return;
    }
    std::uint64_t rv = 0;
    Decoder(payload).read(rv);
    if (rv != kReplyStillWorking) {
      return;
    }
  }
}

// One round trip on `transport`, in the caller's buffers (a pooled connection keeps its own):
// `frame` is wiped once sent, or when sending fails, since it may hold a PIN; `payload` keeps
// the reply for the caller to wipe. Returns the reply's CK_RV; `reply` is decoded only when
// that is CKR_OK. Throws TransportClosed, TransportTimedOut and MalformedFrame.
template <CallId id>
std::uint64_t roundTrip(Transport& transport, const typename Call<id>::Request& request,
                        typename Call<id>::Reply& reply, Bytes& frame, Bytes& payload) {
  encodeRequest<id>(request, frame);
  try {
    transport.send(frame);
  } catch (...) {
    wipe(frame);
    throw;
  }
  wipe(frame);
  receiveReply(transport, payload);
  Decoder decoder(payload);
  std::uint64_t rv = 0;
  decoder.read(rv);
  if (rv == 0) {  // CKR_OK: only then does the reply carry fields
    decoder.read(reply);
    decoder.expectEnd();
  }
  return rv;
}

}  // namespace dojang::wire
