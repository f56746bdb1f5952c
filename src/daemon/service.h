// The daemon's side of every wire call: one method per row of DOJANG_WIRE_CALLS. Methods throw
// dojang::Error; the dispatcher turns that into the reply's CK_RV. The handlers live by group:
// service.cc (clients, slots and tokens, status), service_sessions.cc (sessions and logins),
// service_objects.cc (objects and keys, through TokenAccess, where the policy is).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "src/common/wire/calls.h"
#include "src/daemon/client.h"
#include "src/daemon/prompt_need.h"
#include "src/daemon/slot_table.h"

namespace dojang::daemon {

// What a call knows about who made it.
struct CallContext {
  std::shared_ptr<Client> client;
  std::function<bool()> peerGone;  // true once the connection's other end has hung up
  // Tells the client the call is still working (protocol 2 on; empty before). A call that may
  // wait calls it at least every wire::kKeepaliveInterval. False once the client has gone.
  std::function<bool()> keepAlive;
};

class Service final {
 public:
  Service(SlotTable& slots, std::vector<wire::BackendStatus> backends);
  Service(const Service&) = delete;
  Service& operator=(const Service&) = delete;

  // Connections of one client process share a Client, found by the id in its Hello. The id is
  // bound to the process that made the client: from any other `peer` it is refused. Throws
  // CKR_FUNCTION_FAILED for a protocol version outside [kMinProtocolVersion, kProtocolVersion].
  std::shared_ptr<Client> attach(const wire::HelloRequest& hello, const PeerProcess& peer);
  // The reply frame refusing a Hello: the error, then this daemon's HelloReply, so that the
  // client can name the daemon and its version (a protocol 1 module reads only the error).
  void refuseHello(CK_RV rv, const wire::HelloRequest& hello, wire::Bytes& frame);
  // Called when a connection closes; the last one closes the client's sessions and logins.
  void detach(const std::shared_ptr<Client>& client);
  void setStopping() noexcept { m_stopping = true; }
  // How dojangd asks for PINs on prompt-mode tokens (src/daemon/prompting); without one, such
  // a token needs C_Login with a PIN like any other.
  // `callAlive` keeps the call alive while the prompt is open, and says false once the client left.
  using PinAsker = std::function<SecureBytes(const Client& client, const PromptNeed& need,
                                             const std::function<bool()>& callAlive)>;
  void setPinAsker(PinAsker asker) { m_pinAsker = std::move(asker); }

#define DOJANG_SERVICE_METHOD(id, name, request, reply) \
  void name(CallContext& context, const wire::request& in, wire::reply& out);
  DOJANG_WIRE_CALLS(DOJANG_SERVICE_METHOD)
#undef DOJANG_SERVICE_METHOD

 private:
  void closeSession(Client& client, ClientSession& session);
  // The prompt access of one call: asks as its client, and gives up when the client has gone.
  [[nodiscard]] PromptAccess promptAccess(CallContext& context) const;

  SlotTable& m_slots;
  const std::vector<wire::BackendStatus> m_backends;
  const std::chrono::steady_clock::time_point m_started = std::chrono::steady_clock::now();
  wire::Bytes m_instance;
  std::atomic<bool> m_stopping{false};
  PinAsker m_pinAsker;

  std::mutex m_clientsMutex;
  std::vector<std::weak_ptr<Client>> m_clients;
  ClientNumber m_nextClientNumber = 1;
  std::atomic<std::uint32_t> m_connections{0};
};

}  // namespace dojang::daemon
