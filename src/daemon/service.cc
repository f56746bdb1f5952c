#include "src/daemon/service.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "src/common/cryptoki/operation_kind.h"
#include "src/common/errors/error.h"
#include "src/common/errors/foreign_errors.h"
#include "src/common/version/dojang_version.h"
#include "src/common/wire/codec.h"
#include "src/common/wire/wire_limits.h"
#include "src/daemon/log.h"
#include "src/daemon/policy.h"

namespace dojang::daemon {

namespace {

// How often a blocked C_WaitForSlotEvent looks whether its client is still there, and sends it
// a keepalive.
constexpr std::chrono::milliseconds kWaitSlice = wire::kKeepaliveInterval;

wire::Version toWire(const CK_VERSION& version) {
  return {version.major, version.minor};
}

}  // namespace

Service::Service(SlotTable& slots, std::vector<wire::BackendStatus> backends)
    : m_slots(slots), m_backends(std::move(backends)), m_instance(16) {
  opensslRandomBytes(m_instance, "RAND_bytes for the daemon instance id");
}

// ---- clients ----

PromptAccess Service::promptAccess(CallContext& context) const {
  if (!m_pinAsker) {
    return {};
  }
  PromptAccess access;
  const auto callAlive = [&context] {
    const bool alive = context.keepAlive ? context.keepAlive() : true;
    return alive && !(context.peerGone && context.peerGone());
  };
  access.ask = [this, &context, callAlive](const PromptNeed& need) {
    return m_pinAsker(*context.client, need, callAlive);
  };
  access.stillWaiting = [callAlive] {
    if (!callAlive()) {
      fail(CKR_FUNCTION_CANCELED, "the client went away while waiting for a PIN prompt");
    }
  };
  return access;
}

std::shared_ptr<Client> Service::attach(const wire::HelloRequest& hello, const PeerProcess& peer) {
  if (!wire::speaksProtocol(hello.protocolVersion)) {
    fail(CKR_FUNCTION_FAILED, "a client (pid " + std::to_string(peer.pid) + ") speaks protocol " +
                                  std::to_string(hello.protocolVersion) + ", this dojangd speaks " +
                                  std::to_string(wire::kMinProtocolVersion) + ".." +
                                  std::to_string(wire::kProtocolVersion) + "; restart the older one");
  }
  if (hello.clientId.size() != 16) {
    fail(CKR_ARGUMENTS_BAD, "client id must be 16 bytes");
  }
  std::lock_guard lock(m_clientsMutex);
  std::erase_if(m_clients, [](const std::weak_ptr<Client>& weak) { return weak.expired(); });
  for (const auto& weak : m_clients) {
    if (auto client = weak.lock(); client && client->id() == hello.clientId) {
      if (client->process() != peer) {
        // Learning another process's id must not get its sessions and logins.
        fail(CKR_GENERAL_ERROR, "client " + std::to_string(client->number()) + "'s id presented by pid " +
                                    std::to_string(peer.pid) + ", not by its own process (pid " +
                                    std::to_string(client->pid()) + ")");
      }
      ++client->connections;
      ++m_connections;
      return client;
    }
  }
  auto client = std::make_shared<Client>(m_nextClientNumber++, hello.clientId, hello.program, peer,
                                         m_slots.eventCursor());
  ++client->connections;
  ++m_connections;
  m_clients.push_back(client);
  logInfo("client " + std::to_string(client->number()) + " connected: " + hello.program + " (pid " +
          (peer.pid != 0 ? std::to_string(peer.pid) : std::string("unknown")) + ")");
  return client;
}

void Service::detach(const std::shared_ptr<Client>& client) {
  --m_connections;
  if (--client->connections > 0) {
    return;
  }
  for (auto& session : client->takeAllSessions()) {
    closeSession(*client, *session);
  }
  // A login a PIN prompt gave lasts until the client process leaves (cache = "connection").
  for (const auto slot : m_slots.slotIds(true)) {
    try {
      const auto token = m_slots.tokenIn(slot);
      if (token->isPromptedLogin(client->number())) {
        token->logout(client->number());
      }
    } catch (const Error&) {
      // The token went away: its logins went with it.
    }
  }
  logInfo("client " + std::to_string(client->number()) + " disconnected");
}

void Service::closeSession(Client& client, ClientSession& session) {
  std::lock_guard lock(session.mutex);
  for (auto object : session.sessionObjects) {
    session.token->forget(object);
  }
  session.backend.reset();  // closes the backend session and its session objects
  // PKCS#11: closing an application's last session with a token logs it out of that token.
  if (!client.hasSessionsOn(session.slot) && session.token->loginOf(client.number()) &&
      !session.token->isPromptedLogin(client.number())) {
    try {
      session.token->logout(client.number());
    } catch (const Error& error) {
      logWarning(std::string("logout after last session: ") + error.what());
    }
  }
}

// ---- calls ----

void Service::Hello(CallContext&, const wire::HelloRequest& in, wire::HelloReply& out) {
  out.protocolVersion = wire::negotiatedProtocol(in.protocolVersion);
  out.daemonInstance = m_instance;
  out.daemonPid = static_cast<std::uint32_t>(::getpid());
}

void Service::refuseHello(CK_RV rv, const wire::HelloRequest& hello, wire::Bytes& frame) {
  CallContext nobody;
  wire::HelloReply about;
  Hello(nobody, hello, about);
  about.protocolVersion = wire::kProtocolVersion;
  wire::encodeReply<wire::Empty>(rv, nullptr, frame);
  frame.reserve(frame.size() + wire::Sizer::size(about));
  wire::Encoder(frame).write(about);
}

void Service::GetSlotList(CallContext&, const wire::GetSlotListRequest& in, wire::GetSlotListReply& out) {
  out.slots = m_slots.slotIds(in.tokenPresent);
}

void Service::GetSlotInfo(CallContext&, const wire::SlotRequest& in, wire::GetSlotInfoReply& out) {
  const auto description = m_slots.slotDescription(in.slot);
  out.info.description = description.description;
  out.info.manufacturer = description.manufacturer;
  // Every dojang slot can lose its token (the daemon can lose its backend), so NSS keeps
  // polling it rather than assuming a token that must be there at load time.
  out.info.flags = description.flags | CKF_REMOVABLE_DEVICE;
  out.info.hardwareVersion = toWire(description.hardwareVersion);
  out.info.firmwareVersion = toWire(description.firmwareVersion);
}

void Service::GetTokenInfo(CallContext&, const wire::SlotRequest& in, wire::GetTokenInfoReply& out) {
  auto token = m_slots.tokenIn(in.slot);
  const auto description = token->description();
  auto& info = out.info;
  info.label = description.label;
  info.manufacturer = description.manufacturer;
  info.model = description.model;
  info.serialNumber = description.serialNumber;
  info.flags = description.flags;
  info.maxSessionCount = CK_EFFECTIVELY_INFINITE;
  info.sessionCount = CK_UNAVAILABLE_INFORMATION;
  info.maxRwSessionCount = CK_EFFECTIVELY_INFINITE;
  info.rwSessionCount = CK_UNAVAILABLE_INFORMATION;
  info.maxPinLen = description.maxPinLen;
  info.minPinLen = description.minPinLen;
  info.totalPublicMemory = description.totalPublicMemory;
  info.freePublicMemory = description.freePublicMemory;
  info.totalPrivateMemory = description.totalPrivateMemory;
  info.freePrivateMemory = description.freePrivateMemory;
  info.hardwareVersion = toWire(description.hardwareVersion);
  info.firmwareVersion = toWire(description.firmwareVersion);
}

void Service::GetMechanismList(CallContext&, const wire::SlotRequest& in, wire::GetMechanismListReply& out) {
  auto token = m_slots.tokenIn(in.slot);
  for (const auto& entry : token->mechanisms()) {
    out.mechanisms.push_back(
        {entry.type, entry.info.ulMinKeySize, entry.info.ulMaxKeySize, entry.info.flags});
  }
}

void Service::WaitForSlotEvent(CallContext& context, const wire::WaitForSlotEventRequest& in,
                               wire::WaitForSlotEventReply& out) {
  std::uint64_t cursor = context.client->eventCursor.load();
  for (;;) {
    if (!in.dontBlock && context.keepAlive && !context.keepAlive()) {
      fail(CKR_CRYPTOKI_NOT_INITIALIZED, "wait cancelled: the client went away");
    }
    auto slot = m_slots.nextEvent(cursor, in.dontBlock ? std::chrono::milliseconds(0) : kWaitSlice);
    if (slot) {
      context.client->eventCursor = cursor;
      out.slot = *slot;
      return;
    }
    if (in.dontBlock) {
      fail(CKR_NO_EVENT, "no slot event");
    }
    if (m_stopping || (context.peerGone && context.peerGone())) {
      fail(CKR_CRYPTOKI_NOT_INITIALIZED, "wait cancelled");
    }
  }
}

void Service::DaemonStatus(CallContext& context, const wire::Empty&, wire::DaemonStatusReply& out) {
  out.version = kVersion;
  out.pid = static_cast<std::uint32_t>(::getpid());
  out.uptimeSeconds = static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - m_started).count());
  out.backends = m_backends;
  out.slots = m_slots.status();
  // The counts leave out the client asking, so `dojang status` does not count itself.
  const int asking = context.client ? context.client->connections.load() : 0;
  out.connections = static_cast<std::uint32_t>(std::max(0, static_cast<int>(m_connections.load()) - asking));
  std::lock_guard lock(m_clientsMutex);
  for (const auto& weak : m_clients) {
    if (auto client = weak.lock(); client && client != context.client) {
      ++out.clients;
      out.sessions += static_cast<std::uint32_t>(client->sessionCount());
    }
  }
}

}  // namespace dojang::daemon
