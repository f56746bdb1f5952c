#include "src/daemon/token_access.h"

#include <mutex>
#include <optional>
#include <string>
#include <utility>

#include "src/common/cryptoki/key_use.h"
#include "src/common/errors/error.h"
#include "src/daemon/policy.h"

namespace dojang::daemon {

namespace {

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

}  // namespace

Viewer TokenAccess::viewer() const {
  return {m_client.number(), m_session.token->loginOf(m_client.number()).has_value()};
}

void TokenAccess::requireLogin() const {
  if (!m_session.token->loginOf(m_client.number())) {
    fail(CKR_USER_NOT_LOGGED_IN, "log in first");
  }
}

void TokenAccess::loginOrPrompt(const char* operation, token::ObjectId key) {
  auto& token = *m_session.token;
  if (token.pinMode() != PinMode::Prompt) {
    requireLogin();
    return;
  }
  if (token.loginOf(m_client.number())) {
    return;
  }
  if (m_prompt == nullptr || !m_prompt->ask) {
    fail(CKR_USER_NOT_LOGGED_IN, "log in first: nobody can be asked for the PIN here");
  }
  PromptNeed need;
  need.operation = operation;
  need.tokenLabel = token.description().label;
  if (key != 0) {
    need.certificate = certificateWithId(token.keyIdOf(*m_session.backend, key, viewer()));
  }
  token.promptLogin(
      m_client.number(), CKU_USER,
      [&](const token::PinState& pin) {
        need.pin = pin;
        return m_prompt->ask(need);
      },
      m_prompt->stillWaiting ? m_prompt->stillWaiting : [] {});
}

template <class Run>
decltype(auto) TokenAccess::withAdministrator(const char* operation, Run&& run) {
  try {
    return run();
  } catch (const Error& error) {
    if (error.kind() != ErrorKind::CredentialNeeded || m_prompt == nullptr || !m_prompt->ask) {
      throw;
    }
  }
  PromptNeed need;
  need.secret = PromptSecret::ManagementKey;
  need.operation = operation;
  need.user = CKU_SO;
  need.tokenLabel = m_session.token->description().label;
  const auto key = m_prompt->ask(need);
  m_session.token->token().authorizeAdministrator(key);  // a wrong key: CKR_PIN_INCORRECT, not retried
  m_session.token->descriptionChanged();
  return run();
}

token::Bytes TokenAccess::certificateWithId(const token::Bytes& keyId) {
  if (keyId.empty()) {
    return {};
  }
  const token::AttributeList templ = {{CKA_CLASS, ulongBytes(CKO_CERTIFICATE)}, {CKA_ID, keyId}};
  static constexpr CK_ATTRIBUTE_TYPE kValue[] = {CKA_VALUE};
  for (auto certificate : m_session.token->find(*m_session.backend, templ, viewer())) {
    auto reads = m_session.token->read(*m_session.backend, certificate, kValue, viewer());
    if (!reads.empty() && reads[0].status == CKR_OK) {
      return std::move(reads[0].value);
    }
  }
  return {};
}

token::ObjectId TokenAccess::backendObject(token::ObjectId object, const char* operation) {
  if (!isStandIn(object)) {
    return object;
  }
  loginOrPrompt(operation, object);
  return m_session.token->realKeyFor(*m_session.backend, object);
}

void TokenAccess::requireReadWriteFor(bool tokenObjects, const char* what) const {
  if (tokenObjects && (m_session.flags & CKF_RW_SESSION) == 0) {
    fail(CKR_SESSION_READ_ONLY, what);
  }
}

void TokenAccess::adopt(token::ObjectId object, bool tokenObject) {
  m_session.token->remember(object, tokenObject ? 0 : m_client.number());
  if (!tokenObject) {
    m_session.sessionObjects.push_back(object);
  }
}

// ---- objects ----

std::vector<token::ObjectId> TokenAccess::find(const token::AttributeList& templ) {
  checkTemplate(templ);
  std::lock_guard lock(m_session.mutex);
  return m_session.token->find(*m_session.backend, templ, viewer());
}

std::vector<token::AttributeRead> TokenAccess::read(token::ObjectId object,
                                                    std::span<const CK_ATTRIBUTE_TYPE> types) {
  std::lock_guard lock(m_session.mutex);
  return m_session.token->read(*m_session.backend, object, types, viewer());
}

void TokenAccess::write(token::ObjectId object, const token::AttributeList& templ) {
  checkTemplate(templ);
  std::lock_guard lock(m_session.mutex);
  const auto facts = m_session.token->factsFor(*m_session.backend, object, viewer());
  requireReadWriteFor(facts.isTokenObject, "token objects change only in read-write sessions");
  // Loosening protection is refused here, whatever the token would allow.
  refuseLooserProtection(templ, facts.objectClass, facts.isPrivate);
  const auto target = backendObject(object, "change a key");
  m_session.backend->writeAttributes(target, templ);
  m_session.token->forgetAttributes(target);
}

token::ObjectId TokenAccess::create(token::AttributeList& templ) {
  checkTemplate(templ);
  const auto objectClass = templateUlong(templ, CKA_CLASS);
  if (!objectClass) {
    fail(CKR_TEMPLATE_INCOMPLETE, "an object needs CKA_CLASS");
  }
  const bool isKey = isKeyClass(*objectClass);
  const bool tokenObject = templateBool(templ, CKA_TOKEN).value_or(false);
  requireReadWriteFor(tokenObject, "token objects are created only in read-write sessions");
  std::lock_guard lock(m_session.mutex);
  if (templateBool(templ, CKA_PRIVATE).value_or(isKey) || isKey) {
    loginOrPrompt(isKey ? "store a key" : "store a private object");
  }
  if (isKey) {
    // The explicit import path: the key arrives once and is protected on the token; the caller
    // wipes its bytes as soon as the token has them.
    enforcePrivateKeyTemplate(templ);
  }
  const auto object =
      withAdministrator("store an object", [&] { return m_session.backend->createObject(templ); });
  m_session.token->invalidateObjects();  // see destroy()
  adopt(object, tokenObject);
  return object;
}

token::ObjectId TokenAccess::copy(token::ObjectId object, const token::AttributeList& templ) {
  checkTemplate(templ);
  std::lock_guard lock(m_session.mutex);
  const auto facts = m_session.token->factsFor(*m_session.backend, object, viewer());
  const bool copyIsPrivate = templateBool(templ, CKA_PRIVATE).value_or(facts.isPrivate);
  if (isKeyClass(facts.objectClass) || copyIsPrivate) {
    loginOrPrompt("copy a key");  // copying a key or making a private object needs a login
  }
  const auto original = backendObject(object, "copy a key");
  if (templateUlong(templ, CKA_CLASS).value_or(facts.objectClass) != facts.objectClass) {
    fail(CKR_ATTRIBUTE_READ_ONLY, "a copy keeps the class of its original");
  }
  // A copy is as protected as its original, whatever the token would allow.
  refuseLooserProtection(templ, facts.objectClass, facts.isPrivate);
  const bool tokenCopy = templateBool(templ, CKA_TOKEN).value_or(facts.isTokenObject);
  requireReadWriteFor(tokenCopy, "token objects are created only in read-write sessions");
  const auto copied = m_session.backend->copyObject(original, templ);
  adopt(copied, tokenCopy);
  return copied;
}

void TokenAccess::destroy(token::ObjectId object) {
  std::lock_guard lock(m_session.mutex);
  const auto facts = m_session.token->factsFor(*m_session.backend, object, viewer());
  requireReadWriteFor(facts.isTokenObject, "token objects are destroyed only in read-write sessions");
  const auto target = backendObject(object, "delete a key");
  withAdministrator("delete an object", [&] { m_session.backend->destroyObject(target); });
  m_session.token->forget(target);
  // A card driver's objects may go together: destroying a PIV key deletes its slot's certificate
  // too, and generating into a slot replaces all three of its objects. So the listing and the
  // other objects' attributes are read again after every such change.
  m_session.token->invalidateObjects();
  std::erase(m_session.sessionObjects, object);
}

CK_ULONG TokenAccess::objectSize(token::ObjectId object) {
  std::lock_guard lock(m_session.mutex);
  (void)m_session.token->factsFor(*m_session.backend, object, viewer());  // hidden objects do not exist
  if (isStandIn(object)) {
    return CK_UNAVAILABLE_INFORMATION;  // the real key is not looked at without a private operation
  }
  return m_session.backend->objectSize(object);
}

token::KeyPair TokenAccess::generateKeyPair(const token::Mechanism& mechanism,
                                            token::AttributeList& publicTemplate,
                                            token::AttributeList& privateTemplate) {
  if (m_session.token->pinMode() != PinMode::Prompt) {
    requireLogin();
  }
  if (!isKeyGenerationMechanism(mechanism.type) ||
      !m_session.token->offersMechanism(mechanism.type, CKF_GENERATE_KEY_PAIR)) {
    fail(CKR_MECHANISM_INVALID, "not a key-pair generation mechanism of this token");
  }
  checkTemplate(publicTemplate);
  checkTemplate(privateTemplate);
  enforcePrivateKeyTemplate(privateTemplate);
  const bool publicOnToken = templateBool(publicTemplate, CKA_TOKEN).value_or(false);
  const bool privateOnToken = templateBool(privateTemplate, CKA_TOKEN).value_or(false);
  requireReadWriteFor(publicOnToken || privateOnToken,
                      "token keys are generated only in read-write sessions");
  token::KeyGeneration target;
  for (const auto& attribute : privateTemplate) {
    if (attribute.type == CKA_ID) {
      target.idHint = attribute.value;  // a PIV card picks its key slot by it
    }
  }
  std::lock_guard lock(m_session.mutex);
  loginOrPrompt("generate a key pair");
  const auto pair = withAdministrator("generate a key pair", [&] {
    return m_session.backend->generateKeyPair(mechanism, publicTemplate, privateTemplate, target);
  });
  m_session.token->invalidateObjects();  // see destroy()
  adopt(pair.publicKey, publicOnToken);
  if (pair.privateKey != 0) {
    adopt(pair.privateKey, privateOnToken);
  }
  return pair;
}

// ---- keys ----

void TokenAccess::checkKeyUse(OperationKind kind, const token::Mechanism& mechanism, token::ObjectId key) {
  if (!isServedMechanism(mechanism.type) ||
      !m_session.token->offersMechanism(mechanism.type, mechanismFlag(kind))) {
    fail(CKR_MECHANISM_INVALID, "mechanism not offered for this operation");
  }
  if (!isServedMechanismParameters(mechanism)) {
    fail(CKR_MECHANISM_PARAM_INVALID, "OAEP labels are not supported");
  }
  const auto who = viewer();
  ObjectFacts facts;
  try {
    facts = m_session.token->factsFor(*m_session.backend, key, who);
  } catch (const Error& error) {
    if (error.rv() == CKR_OBJECT_HANDLE_INVALID) {
      fail(CKR_KEY_HANDLE_INVALID, "no such key");
    }
    throw;
  }
  if (const auto refusal = refuseKeyUse(kind, keyTypeFor(mechanism.type),
                                        {facts.objectClass, facts.keyType, facts.allows(kind)})) {
    fail(refusal->rv,
         std::string(refusal->reason) + " (key " + std::to_string(key) + ", " + operationName(kind) + ")");
  }
  // In prompt mode the operation itself asks for the PIN.
  if (facts.objectClass == CKO_PRIVATE_KEY && !who.loggedIn &&
      m_session.token->pinMode() != PinMode::Prompt) {
    fail(CKR_USER_NOT_LOGGED_IN, "private key operations need a login");
  }
}

void TokenAccess::checkKeyOperation(OperationKind kind, const token::Mechanism& mechanism,
                                    token::ObjectId key) {
  std::lock_guard lock(m_session.mutex);
  m_session.contextLogin.reset();  // a new operation: a PIN given before it is not for it
  checkKeyUse(kind, mechanism, key);
  if (!isStandIn(key)) {
    m_session.backend->checkKeyOperation(kind, mechanism, key);
  } else if (m_session.token->loginOf(m_client.number())) {
    m_session.backend->checkKeyOperation(kind, mechanism,
                                         m_session.token->realKeyFor(*m_session.backend, key));
  }
  // A stand-in before the prompt: dojang's checks above are all; the token checks at the operation.
}

void TokenAccess::loginOrPromptForKey(OperationKind kind, token::ObjectId key) {
  if (m_session.token->pinMode() != PinMode::Prompt || m_session.token->loginOf(m_client.number())) {
    return;
  }
  loginOrPrompt(kind == OperationKind::Sign ? "sign" : "decrypt", key);
}

// Sign and decrypt: the key checked, then `operation` run with the context-specific login the
// client gave for it (used once), and the token's flags read afresh if that PIN reached the token.
template <class Operation>
token::Bytes TokenAccess::runPrivateKeyOperation(OperationKind kind, const token::Mechanism& mechanism,
                                                 token::ObjectId key, Operation&& operation) {
  std::lock_guard lock(m_session.mutex);
  std::optional<PendingContextLogin> taken;
  const auto contextLogin = takeContextLogin(m_session, taken);
  checkKeyUse(kind, mechanism, key);
  loginOrPromptForKey(kind, key);
  const auto target = isStandIn(key) ? m_session.token->realKeyFor(*m_session.backend, key) : key;
  std::optional<DescriptionRefresh> refresh;
  if (contextLogin.given) {
    refresh.emplace(*m_session.token);
  }
  struct EndOfUse {
    TokenState& token;
    ClientNumber client;
    ~EndOfUse() { token.endPromptedUse(client); }  // cache = "off": the PIN was for this use
  } endOfUse{*m_session.token, m_client.number()};
  return operation(*m_session.backend, target, contextLogin);
}

token::Bytes TokenAccess::sign(const token::Mechanism& mechanism, token::ObjectId key,
                               std::span<const std::uint8_t> data) {
  return runPrivateKeyOperation(
      OperationKind::Sign, mechanism, key,
      [&](token::TokenSession& backend, token::ObjectId target, const token::ContextLogin& contextLogin) {
        return backend.sign(mechanism, target, data, contextLogin);
      });
}

void TokenAccess::verify(const token::Mechanism& mechanism, token::ObjectId key,
                         std::span<const std::uint8_t> data, std::span<const std::uint8_t> signature) {
  std::lock_guard lock(m_session.mutex);
  checkKeyUse(OperationKind::Verify, mechanism, key);
  m_session.backend->verify(mechanism, key, data, signature);
}

token::Bytes TokenAccess::decrypt(const token::Mechanism& mechanism, token::ObjectId key,
                                  std::span<const std::uint8_t> data) {
  return runPrivateKeyOperation(
      OperationKind::Decrypt, mechanism, key,
      [&](token::TokenSession& backend, token::ObjectId target, const token::ContextLogin& contextLogin) {
        return backend.decrypt(mechanism, target, data, contextLogin);
      });
}

token::Bytes TokenAccess::digest(const token::Mechanism& mechanism, std::span<const std::uint8_t> data) {
  if (!m_session.token->offersMechanism(mechanism.type, CKF_DIGEST)) {
    fail(CKR_MECHANISM_INVALID, "digest mechanism not offered");
  }
  std::lock_guard lock(m_session.mutex);
  return m_session.backend->digest(mechanism, data);
}

token::Bytes TokenAccess::random(std::size_t length) {
  std::lock_guard lock(m_session.mutex);
  return m_session.backend->generateRandom(length);
}

}  // namespace dojang::daemon
