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

token::AttributeList toAttributes(const std::vector<wire::Attribute>& in) {
  token::AttributeList out;
  out.reserve(in.size());
  for (const auto& attribute : in) {
    out.push_back({attribute.type, attribute.value});
  }
  return out;
}

void wipeAttributes(token::AttributeList& list) {
  for (auto& attribute : list) {
    if (!attribute.value.empty()) {
      explicit_bzero(attribute.value.data(), attribute.value.size());
    }
  }
}

token::Mechanism toMechanism(const wire::Mechanism& in) {
  token::Mechanism out;
  out.type = in.type;
  out.params.hashAlg = in.hashAlg;
  out.params.mgf = in.mgf;
  out.params.data = in.data;
  switch (in.paramsKind) {
    case wire::MechanismParams::None:
      out.params.kind = token::MechanismParameters::Kind::None;
      break;
    case wire::MechanismParams::Pss:
      out.params.kind = token::MechanismParameters::Kind::Pss;
      out.params.saltLength = in.saltOrSource;
      break;
    case wire::MechanismParams::Oaep:
      out.params.kind = token::MechanismParameters::Kind::Oaep;
      out.params.sourceType = in.saltOrSource;
      break;
    case wire::MechanismParams::Raw:
      out.params.kind = token::MechanismParameters::Kind::Raw;
      break;
    default:
      fail(CKR_MECHANISM_PARAM_INVALID, "unknown mechanism parameter kind");
  }
  return out;
}

wire::Version toWire(const CK_VERSION& version) { return {version.major, version.minor}; }

// CheckOperation names a key operation: Digest, or a byte that names no kind, is refused.
OperationKind keyOperationOf(wire::Operation operation) {
  if (!keyUsageAttribute(operation)) {
    fail(CKR_ARGUMENTS_BAD, "unknown operation");
  }
  return operation;
}

}  // namespace

Service::Service(SlotTable& slots, std::vector<wire::BackendStatus> backends)
    : m_slots(slots), m_backends(std::move(backends)), m_instance(16) {
  opensslRandomBytes(m_instance, "RAND_bytes for the daemon instance id");
}

// ---- clients ----

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
  logInfo("client " + std::to_string(client->number()) + " disconnected");
}

void Service::closeSession(Client& client, ClientSession& session) {
  std::lock_guard lock(session.mutex);
  for (auto object : session.sessionObjects) {
    session.token->forget(object);
  }
  session.backend.reset();  // closes the backend session and its session objects
  // PKCS#11: closing an application's last session with a token logs it out of that token.
  if (!client.hasSessionsOn(session.slot) && session.token->loginOf(client.number())) {
    try {
      session.token->logout(client.number());
    } catch (const Error& error) {
      logWarning(std::string("logout after last session: ") + error.what());
    }
  }
}

Viewer Service::viewerOf(Client& client, ClientSession& session) {
  return {client.number(), session.token->loginOf(client.number()).has_value()};
}

void Service::requireLogin(Client& client, ClientSession& session) {
  if (!session.token->loginOf(client.number())) {
    fail(CKR_USER_NOT_LOGGED_IN, "log in first");
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
    out.mechanisms.push_back({entry.type, entry.info.ulMinKeySize, entry.info.ulMaxKeySize, entry.info.flags});
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

void Service::FindObjects(CallContext& context, const wire::FindObjectsRequest& in,
                          wire::FindObjectsReply& out) {
  auto session = context.client->session(in.session);
  const auto templ = toAttributes(in.templ);
  checkTemplate(templ);
  std::lock_guard lock(session->mutex);
  out.objects = session->token->find(*session->backend, templ, viewerOf(*context.client, *session));
}

void Service::GetAttributeValue(CallContext& context, const wire::GetAttributeValueRequest& in,
                                wire::GetAttributeValueReply& out) {
  auto session = context.client->session(in.session);
  if (in.types.size() > wire::kMaxTemplateAttributes) {
    fail(CKR_ARGUMENTS_BAD, "more than " + std::to_string(wire::kMaxTemplateAttributes) + " attributes asked for");
  }
  std::lock_guard lock(session->mutex);
  auto reads = session->token->read(*session->backend, in.object, in.types, viewerOf(*context.client, *session));
  out.attributes.reserve(reads.size());
  for (auto& read : reads) {
    out.attributes.push_back({read.type, read.status, std::move(read.value)});
  }
}

void Service::SetAttributeValue(CallContext& context, const wire::SetAttributeValueRequest& in, wire::Empty&) {
  auto session = context.client->session(in.session);
  auto templ = toAttributes(in.templ);
  checkTemplate(templ);
  std::lock_guard lock(session->mutex);
  const auto facts = session->token->factsFor(*session->backend, in.object, viewerOf(*context.client, *session));
  if (facts.isTokenObject && (session->flags & CKF_RW_SESSION) == 0) {
    fail(CKR_SESSION_READ_ONLY, "token objects change only in read-write sessions");
  }
  // Loosening protection is refused here, whatever the token would allow.
  refuseLooserProtection(templ, facts.objectClass, facts.isPrivate);
  session->backend->writeAttributes(in.object, templ);
  session->token->forgetAttributes(in.object);
}

token::ObjectId Service::createChecked(Client& client, ClientSession& session, token::AttributeList& templ) {
  checkTemplate(templ);
  const auto objectClass = templateUlong(templ, CKA_CLASS);
  if (!objectClass) {
    fail(CKR_TEMPLATE_INCOMPLETE, "an object needs CKA_CLASS");
  }
  const bool isKey = isKeyClass(*objectClass);
  if (templateBool(templ, CKA_TOKEN).value_or(false) && (session.flags & CKF_RW_SESSION) == 0) {
    fail(CKR_SESSION_READ_ONLY, "token objects are created only in read-write sessions");
  }
  if (templateBool(templ, CKA_PRIVATE).value_or(isKey) || isKey) {
    requireLogin(client, session);
  }
  if (isKey) {
    // The explicit import path: the key arrives once, is protected on the token, and its
    // bytes are wiped here as soon as the token has them.
    enforcePrivateKeyTemplate(templ);
  }
  const bool tokenObject = templateBool(templ, CKA_TOKEN).value_or(false);
  std::lock_guard lock(session.mutex);
  const auto object = session.backend->createObject(templ);
  session.token->remember(object, tokenObject ? 0 : client.number());
  if (!tokenObject) {
    session.sessionObjects.push_back(object);
  }
  return object;
}

void Service::CreateObject(CallContext& context, const wire::CreateObjectRequest& in, wire::ObjectReply& out) {
  auto session = context.client->session(in.session);
  auto templ = toAttributes(in.templ);
  try {
    out.object = createChecked(*context.client, *session, templ);
  } catch (...) {
    wipeAttributes(templ);  // whichever check refused it, the key bytes die here
    throw;
  }
  wipeAttributes(templ);
}

void Service::DestroyObject(CallContext& context, const wire::ObjectRequest& in, wire::Empty&) {
  auto session = context.client->session(in.session);
  std::lock_guard lock(session->mutex);
  const auto facts = session->token->factsFor(*session->backend, in.object, viewerOf(*context.client, *session));
  if (facts.isTokenObject && (session->flags & CKF_RW_SESSION) == 0) {
    fail(CKR_SESSION_READ_ONLY, "token objects are destroyed only in read-write sessions");
  }
  session->backend->destroyObject(in.object);
  session->token->forget(in.object);
  std::erase(session->sessionObjects, in.object);
}

void Service::GetObjectSize(CallContext& context, const wire::ObjectRequest& in, wire::ObjectSizeReply& out) {
  auto session = context.client->session(in.session);
  std::lock_guard lock(session->mutex);
  (void)session->token->factsFor(*session->backend, in.object, viewerOf(*context.client, *session));
  out.size = session->backend->objectSize(in.object);
}

void Service::CopyObject(CallContext& context, const wire::CopyObjectRequest& in, wire::ObjectReply& out) {
  auto session = context.client->session(in.session);
  auto& client = *context.client;
  const auto templ = toAttributes(in.templ);
  checkTemplate(templ);
  std::lock_guard lock(session->mutex);
  const auto viewer = viewerOf(client, *session);
  const auto facts = session->token->factsFor(*session->backend, in.object, viewer);
  const bool copyIsPrivate = templateBool(templ, CKA_PRIVATE).value_or(facts.isPrivate);
  if ((isKeyClass(facts.objectClass) || copyIsPrivate) && !viewer.loggedIn) {
    fail(CKR_USER_NOT_LOGGED_IN, "copying a key or making a private object needs a login");
  }
  if (templateUlong(templ, CKA_CLASS).value_or(facts.objectClass) != facts.objectClass) {
    fail(CKR_ATTRIBUTE_READ_ONLY, "a copy keeps the class of its original");
  }
  // A copy is as protected as its original, whatever the token would allow.
  refuseLooserProtection(templ, facts.objectClass, facts.isPrivate);
  const bool tokenCopy = templateBool(templ, CKA_TOKEN).value_or(facts.isTokenObject);
  if (tokenCopy && (session->flags & CKF_RW_SESSION) == 0) {
    fail(CKR_SESSION_READ_ONLY, "token objects are created only in read-write sessions");
  }
  out.object = session->backend->copyObject(in.object, templ);
  session->token->remember(out.object, tokenCopy ? 0 : client.number());
  if (!tokenCopy) {
    session->sessionObjects.push_back(out.object);
  }
}

void Service::GenerateKeyPair(CallContext& context, const wire::GenerateKeyPairRequest& in,
                              wire::GenerateKeyPairReply& out) {
  auto session = context.client->session(in.session);
  auto& client = *context.client;
  requireLogin(client, *session);
  if (!isKeyGenerationMechanism(in.mechanism.type) ||
      !session->token->offersMechanism(in.mechanism.type, CKF_GENERATE_KEY_PAIR)) {
    fail(CKR_MECHANISM_INVALID, "not a key-pair generation mechanism of this token");
  }
  auto publicTemplate = toAttributes(in.publicTemplate);
  auto privateTemplate = toAttributes(in.privateTemplate);
  checkTemplate(publicTemplate);
  checkTemplate(privateTemplate);
  enforcePrivateKeyTemplate(privateTemplate);
  const bool publicOnToken = templateBool(publicTemplate, CKA_TOKEN).value_or(false);
  const bool privateOnToken = templateBool(privateTemplate, CKA_TOKEN).value_or(false);
  if ((publicOnToken || privateOnToken) && (session->flags & CKF_RW_SESSION) == 0) {
    fail(CKR_SESSION_READ_ONLY, "token keys are generated only in read-write sessions");
  }
  token::KeyGeneration target;
  for (const auto& attribute : privateTemplate) {
    if (attribute.type == CKA_ID) {
      target.idHint = attribute.value;  // a PIV card picks its key slot by it
    }
  }
  std::lock_guard lock(session->mutex);
  const auto pair =
      session->backend->generateKeyPair(toMechanism(in.mechanism), publicTemplate, privateTemplate, target);
  out.publicKey = pair.publicKey;
  out.privateKey = pair.privateKey;
  session->token->remember(pair.publicKey, publicOnToken ? 0 : client.number());
  session->token->remember(pair.privateKey, privateOnToken ? 0 : client.number());
  if (!publicOnToken) {
    session->sessionObjects.push_back(pair.publicKey);
  }
  if (!privateOnToken) {
    session->sessionObjects.push_back(pair.privateKey);
  }
}

namespace {
// The checks every key operation makes, from cached facts: cheap enough for each signature.
void checkKeyUse(TokenState& token, token::TokenSession& backend, const Viewer& viewer,
                 OperationKind kind, const wire::Mechanism& mechanism, std::uint64_t key) {
  if (!isServedMechanism(mechanism.type) || !token.offersMechanism(mechanism.type, mechanismFlag(kind))) {
    fail(CKR_MECHANISM_INVALID, "mechanism not offered for this operation");
  }
  if (!isServedMechanismParameters(toMechanism(mechanism))) {
    fail(CKR_MECHANISM_PARAM_INVALID, "OAEP labels are not supported");
  }
  ObjectFacts facts;
  try {
    facts = token.factsFor(backend, key, viewer);
  } catch (const Error& error) {
    if (error.rv() == CKR_OBJECT_HANDLE_INVALID) {
      fail(CKR_KEY_HANDLE_INVALID, "no such key");
    }
    throw;
  }
  const CK_OBJECT_CLASS wantedClass = asymmetricKeyClass(kind);
  if (facts.objectClass != wantedClass) {
    fail(CKR_KEY_TYPE_INCONSISTENT, "wrong key class for this operation");
  }
  if (wantedClass == CKO_PRIVATE_KEY && !viewer.loggedIn) {
    fail(CKR_USER_NOT_LOGGED_IN, "private key operations need a login");
  }
  if (keyTypeFor(mechanism.type) != facts.keyType) {
    fail(CKR_KEY_TYPE_INCONSISTENT, "mechanism does not fit the key type");
  }
}
// The context-specific login the client gave for this operation, taken out of the session: it
// authorises one operation, and its PIN is wiped when `taken` dies.
token::ContextLogin takeContextLogin(ClientSession& session, std::optional<PendingContextLogin>& taken) {
  taken = std::move(session.contextLogin);
  session.contextLogin.reset();
  if (!taken) {
    return {};
  }
  return {true, taken->pinGiven ? &taken->pin : nullptr};
}

// Sign and decrypt: the key checked, then `operation` run with the context-specific login the
// client gave for it (used once), and the token's flags read afresh if that PIN reached the token.
template <class Operation>
token::Bytes runPrivateKeyOperation(ClientSession& session, const Viewer& viewer, OperationKind kind,
                                    const wire::KeyOperationRequest& in, Operation&& operation) {
  std::optional<PendingContextLogin> taken;
  const auto contextLogin = takeContextLogin(session, taken);
  checkKeyUse(*session.token, *session.backend, viewer, kind, in.mechanism, in.key);
  std::optional<DescriptionRefresh> refresh;
  if (contextLogin.given) {
    refresh.emplace(*session.token);
  }
  return operation(toMechanism(in.mechanism), contextLogin);
}
}  // namespace

void Service::CheckOperation(CallContext& context, const wire::CheckOperationRequest& in, wire::Empty&) {
  auto session = context.client->session(in.session);
  std::lock_guard lock(session->mutex);
  const OperationKind kind = keyOperationOf(in.operation);
  session->contextLogin.reset();  // a new operation: a PIN given before it is not for it
  checkKeyUse(*session->token, *session->backend, viewerOf(*context.client, *session), kind, in.mechanism, in.key);
  session->backend->checkKeyOperation(kind, toMechanism(in.mechanism), in.key);
}

void Service::Sign(CallContext& context, const wire::KeyOperationRequest& in, wire::DataReply& out) {
  auto session = context.client->session(in.session);
  std::lock_guard lock(session->mutex);
  out.data = runPrivateKeyOperation(
      *session, viewerOf(*context.client, *session), OperationKind::Sign, in,
      [&](const token::Mechanism& mechanism, const token::ContextLogin& contextLogin) {
        return session->backend->sign(mechanism, in.key, in.data, contextLogin);
      });
}

void Service::Verify(CallContext& context, const wire::VerifyRequest& in, wire::Empty&) {
  auto session = context.client->session(in.session);
  std::lock_guard lock(session->mutex);
  checkKeyUse(*session->token, *session->backend, viewerOf(*context.client, *session), OperationKind::Verify,
              in.mechanism, in.key);
  session->backend->verify(toMechanism(in.mechanism), in.key, in.data, in.signature);
}

void Service::Decrypt(CallContext& context, const wire::KeyOperationRequest& in, wire::DataReply& out) {
  auto session = context.client->session(in.session);
  std::lock_guard lock(session->mutex);
  out.data = runPrivateKeyOperation(
      *session, viewerOf(*context.client, *session), OperationKind::Decrypt, in,
      [&](const token::Mechanism& mechanism, const token::ContextLogin& contextLogin) {
        return session->backend->decrypt(mechanism, in.key, in.data, contextLogin);
      });
}

void Service::Digest(CallContext& context, const wire::DigestRequest& in, wire::DataReply& out) {
  auto session = context.client->session(in.session);
  if (!session->token->offersMechanism(in.mechanism.type, CKF_DIGEST)) {
    fail(CKR_MECHANISM_INVALID, "digest mechanism not offered");
  }
  std::lock_guard lock(session->mutex);
  out.data = session->backend->digest(toMechanism(in.mechanism), in.data);
}

void Service::GenerateRandom(CallContext& context, const wire::GenerateRandomRequest& in, wire::DataReply& out) {
  auto session = context.client->session(in.session);
  if (in.length > wire::kMaxRandomBytes) {
    fail(CKR_ARGUMENTS_BAD, "too many random bytes asked for");
  }
  std::lock_guard lock(session->mutex);
  out.data = session->backend->generateRandom(in.length);
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
