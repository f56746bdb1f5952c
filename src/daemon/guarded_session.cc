#include "src/daemon/guarded_session.h"

#include "src/common/errors/error.h"
#include "src/daemon/token_state.h"

namespace dojang::daemon {

GuardedSession::GuardedSession(std::unique_ptr<token::TokenSession> inner, TokenState& state)
    : m_inner(std::move(inner)), m_state(state) {}

template <class Call>
auto GuardedSession::guarded(Call&& call, token::ObjectId key, bool contextLoginGiven) -> decltype(call()) {
  try {
    return call();
  } catch (const Error& error) {
    failed(error, key, contextLoginGiven);
  }
}

void GuardedSession::failed(const Error& error, token::ObjectId key, bool contextLoginGiven) {
  if (error.kind() == ErrorKind::TokenRemoved) {
    m_state.tokenRemoved();
    throw Error(CKR_DEVICE_REMOVED, ErrorKind::TokenRemoved, error.what(), error.where());
  }
  if (error.kind() == ErrorKind::LoginLost ||
      (error.rv() == CKR_USER_NOT_LOGGED_IN && !(key != 0 && !contextLoginGiven && wantsContextLogin(key)))) {
    // The daemon only lets logged-in clients reach the token's private side, so the token has
    // lost the login (a card reset by another program). A key that wants its context-specific
    // PIN and did not get it says CKR_USER_NOT_LOGGED_IN too; that is the caller's business, as
    // is an SO asking for what only the user may do.
    m_state.loginLost(error.kind() == ErrorKind::LoginLost);
    throw Error(CKR_USER_NOT_LOGGED_IN, error.kind(), error.what(), error.where());
  }
  throw error;
}

bool GuardedSession::wantsContextLogin(token::ObjectId key) noexcept {
  try {
    const CK_ATTRIBUTE_TYPE types[] = {CKA_ALWAYS_AUTHENTICATE};
    const auto reads = m_inner->readAttributes(key, types);
    return reads.size() == 1 && reads[0].status == CKR_OK && reads[0].value.size() == 1 &&
           reads[0].value[0] == CK_TRUE;
  } catch (...) {
    return false;
  }
}

std::vector<token::ObjectId> GuardedSession::findObjects(const token::AttributeList& templ) {
  return guarded([&] { return m_inner->findObjects(templ); });
}

std::vector<token::AttributeRead> GuardedSession::readAttributes(token::ObjectId object,
                                                                 std::span<const CK_ATTRIBUTE_TYPE> types) {
  return guarded([&] { return m_inner->readAttributes(object, types); });
}

void GuardedSession::writeAttributes(token::ObjectId object, const token::AttributeList& templ) {
  guarded([&] { m_inner->writeAttributes(object, templ); });
}

token::ObjectId GuardedSession::createObject(const token::AttributeList& templ) {
  return guarded([&] { return m_inner->createObject(templ); });
}

token::ObjectId GuardedSession::copyObject(token::ObjectId object, const token::AttributeList& templ) {
  return guarded([&] { return m_inner->copyObject(object, templ); });
}

void GuardedSession::destroyObject(token::ObjectId object) {
  guarded([&] { m_inner->destroyObject(object); });
}

CK_ULONG GuardedSession::objectSize(token::ObjectId object) {
  return guarded([&] { return m_inner->objectSize(object); });
}

token::KeyPair GuardedSession::generateKeyPair(const token::Mechanism& mechanism,
                                               const token::AttributeList& publicTemplate,
                                               const token::AttributeList& privateTemplate,
                                               const token::KeyGeneration& target) {
  return guarded([&] { return m_inner->generateKeyPair(mechanism, publicTemplate, privateTemplate, target); });
}

void GuardedSession::checkKeyOperation(OperationKind kind, const token::Mechanism& mechanism,
                                       token::ObjectId key) {
  guarded([&] { m_inner->checkKeyOperation(kind, mechanism, key); });
}

token::Bytes GuardedSession::sign(const token::Mechanism& mechanism, token::ObjectId key,
                                  std::span<const std::uint8_t> data, const token::ContextLogin& context) {
  return guarded([&] { return m_inner->sign(mechanism, key, data, context); }, key, context.given);
}

void GuardedSession::verify(const token::Mechanism& mechanism, token::ObjectId key,
                            std::span<const std::uint8_t> data, std::span<const std::uint8_t> signature) {
  guarded([&] { m_inner->verify(mechanism, key, data, signature); });
}

token::Bytes GuardedSession::decrypt(const token::Mechanism& mechanism, token::ObjectId key,
                                     std::span<const std::uint8_t> data, const token::ContextLogin& context) {
  return guarded([&] { return m_inner->decrypt(mechanism, key, data, context); }, key, context.given);
}

token::Bytes GuardedSession::digest(const token::Mechanism& mechanism, std::span<const std::uint8_t> data) {
  return guarded([&] { return m_inner->digest(mechanism, data); });
}

token::Bytes GuardedSession::generateRandom(std::size_t length) {
  return guarded([&] { return m_inner->generateRandom(length); });
}

void GuardedSession::initPin(const SecureBytes& pin) {
  guarded([&] { m_inner->initPin(pin); });
}

void GuardedSession::setPin(const SecureBytes& oldPin, const SecureBytes& newPin) {
  guarded([&] { m_inner->setPin(oldPin, newPin); });
}

// ---- TokenState's side: the sessions it hands out, and what a removal found by them does ----

void TokenState::tokenRemoved() {
  if (m_removed.exchange(true)) {
    return;
  }
  std::function<void()> handler;
  {
    std::lock_guard lock(m_handlerMutex);
    handler = m_removalHandler;
  }
  if (handler) {
    handler();
  }
}

void TokenState::setRemovalHandler(std::function<void()> handler) {
  std::lock_guard lock(m_handlerMutex);
  m_removalHandler = std::move(handler);
}

std::unique_ptr<token::TokenSession> TokenState::openSession() {
  try {
    return std::make_unique<GuardedSession>(m_token->openSession(), *this);
  } catch (const Error& error) {
    if (error.kind() == ErrorKind::TokenRemoved) {
      tokenRemoved();
      throw Error(CKR_DEVICE_REMOVED, ErrorKind::TokenRemoved, error.what(), error.where());
    }
    throw;
  }
}

}  // namespace dojang::daemon
