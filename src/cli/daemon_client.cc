#include "src/cli/daemon_client.h"

#include <sys/random.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "src/common/errors/error.h"
#include "src/common/errors/foreign_errors.h"
#include "src/common/wire/codec.h"
#include "src/common/wire/transport.h"

namespace dojang::cli {

namespace {

wire::Bytes randomClientId() {
  wire::Bytes id(16);
  std::size_t filled = 0;
  while (filled < id.size()) {
    const ssize_t n = ::getrandom(id.data() + filled, id.size() - filled, 0);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      throw std::runtime_error(std::string("getrandom: ") + std::strerror(errno));
    }
    filled += static_cast<std::size_t>(n);
  }
  return id;
}

template <wire::CallId id>
typename wire::Call<id>::Reply call(wire::Transport& transport,
                                    const typename wire::Call<id>::Request& request) {
  wire::Bytes frame;
  wire::Bytes payload;
  typename wire::Call<id>::Reply reply;
  const std::uint64_t rv = wire::roundTrip<id>(transport, request, reply, frame, payload);
  if (rv != CKR_OK) {
    throwCkRv(static_cast<CK_RV>(rv), std::string("dojangd ") + wire::Call<id>::kName);
  }
  return reply;
}

}  // namespace

DaemonStatus queryDaemonStatus(const std::string& socketPath) {
  std::unique_ptr<wire::SocketTransport> transport;
  try {
    transport = wire::connectUnixSocket(socketPath);
  } catch (const wire::TransportClosed& error) {
    // connectUnixSocket says "connect PATH: reason"; keep the reason, name the path once.
    const std::string what = error.what();
    const std::size_t colon = what.rfind(": ");
    const std::string reason = colon == std::string::npos ? what : what.substr(colon + 2);
    throw DaemonUnreachable("dojangd is not running: cannot connect to " + socketPath + " (" + reason + ")",
                            socketPath);
  }
  try {
    wire::HelloRequest hello;
    hello.clientId = randomClientId();
    hello.pid = static_cast<std::uint32_t>(::getpid());
    hello.program = "dojang";
    DaemonStatus result;
    result.hello = call<wire::CallId::Hello>(*transport, hello);
    result.status = call<wire::CallId::DaemonStatus>(*transport, wire::Empty{});
    return result;
  } catch (const wire::TransportClosed&) {
    throwTransportFailure("dojangd");
  } catch (const wire::MalformedFrame&) {
    throwTransportFailure("dojangd");
  }
}

}  // namespace dojang::cli
