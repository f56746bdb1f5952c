// TokenState's logins: each client's own login on top of the token-wide one, the PIN verifier
// that checks a second client's PIN without the token, and a lost login.
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "src/common/errors/error.h"
#include "src/common/errors/foreign_errors.h"
#include "src/daemon/log.h"
#include "src/daemon/token_state.h"

namespace dojang::daemon {

namespace {
// After this many wrong PINs checked by the daemon (not the token), it stops answering for the
// token until every client has logged out and the token itself has accepted a PIN again: the
// token's own retry counter cannot see them.
constexpr unsigned kMaxVerifierMismatches = 3;
}  // namespace

TokenState::Verifier TokenState::verifierFor(const SecureBytes& pin) const {
  Verifier out{};
  std::size_t length = 0;
  if (EVP_Q_mac(nullptr, "HMAC", nullptr, "SHA256", nullptr, m_verifierKey.data(), m_verifierKey.size(),
                pin.data(), pin.size(), out.data(), out.size(), &length) == nullptr) {
    throwOpenssl("PIN verifier");
  }
  return out;
}

void TokenState::waitForTokenLocked(std::unique_lock<std::mutex>& lock) {
  m_tokenIdle.wait(lock, [this] { return !m_tokenBusy; });
}

void TokenState::login(ClientNumber client, CK_USER_TYPE user, const SecureBytes* pin) {
  std::unique_lock lock(m_loginMutex);
  // A token login or logout in progress decides which way this login goes.
  waitForTokenLocked(lock);
  if (auto it = m_loggedIn.find(client); it != m_loggedIn.end()) {
    if (it->second == user) {
      fail(CKR_USER_ALREADY_LOGGED_IN, "already logged in");
    }
    fail(CKR_USER_ANOTHER_ALREADY_LOGGED_IN, "already logged in as another user type");
  }
  if (!m_tokenLogin) {
    // The token checks the PIN and counts failures itself. A wrong PIN is never retried. The
    // token may take its time (a PIN pad): nothing but other logins waits for it.
    std::optional<Verifier> verifier;
    if (pin != nullptr) {
      verifier = verifierFor(*pin);
    }
    m_tokenBusy = true;
    lock.unlock();
    try {
      m_token->login(user, pin);
    } catch (...) {
      lock.lock();
      m_tokenBusy = false;
      m_tokenIdle.notify_all();
      descriptionChanged();
      lock.unlock();
      rethrowLoginFailure();
    }
    lock.lock();
    m_tokenBusy = false;
    m_tokenLogin = user;
    m_verifier = verifier;
    m_verifierMismatches = 0;  // the token itself has checked a PIN
    m_loggedIn[client] = user;
    invalidateObjects();  // private objects exist now
    m_tokenIdle.notify_all();
    descriptionChanged();
    return;
  }
  descriptionChanged();
  if (*m_tokenLogin != user) {
    fail(CKR_USER_ANOTHER_ALREADY_LOGGED_IN, "the token is logged in as another user type");
  }
  if (pin == nullptr) {
    // A protected-path (PIN pad) login cannot be checked while the token is already logged in
    // for someone else; accepting it would hand that login over. Asking the user through
    // pinentry is the daemon's job once PIN prompts land.
    fail(CKR_PIN_INCORRECT, "the token is in use by another program: a PIN is needed to log in");
  }
  if (m_verifierMismatches >= kMaxVerifierMismatches) {
    fail(CKR_PIN_LOCKED, "too many wrong PINs while the token is in use; log out everywhere first");
  }
  if (!m_verifier || CRYPTO_memcmp(m_verifier->data(), verifierFor(*pin).data(), m_verifier->size()) != 0) {
    ++m_verifierMismatches;
    fail(CKR_PIN_INCORRECT, "wrong PIN");
  }
  // A right PIN checked here leaves the count alone: resetting it would let wrong guesses
  // alternate with right logins past what the token's own counter allows.
  m_loggedIn[client] = user;
}

void TokenState::logout(ClientNumber client) {
  std::unique_lock lock(m_loginMutex);
  if (m_loggedIn.erase(client) == 0) {
    fail(CKR_USER_NOT_LOGGED_IN, "not logged in");
  }
  m_promptedClients.erase(client);
  descriptionChanged();
  if (!m_loggedIn.empty() || !m_tokenLogin) {
    return;
  }
  endTokenLogin(lock);
}

void TokenState::endTokenLogin(std::unique_lock<std::mutex>& lock) {
  m_tokenLogin.reset();
  m_verifier.reset();
  m_tokenBusy = true;
  lock.unlock();
  try {
    // Whatever the token still believes, the next login must be checked by it again.
    m_token->logout();
  } catch (...) {
    // Not logged in, or removed: either way no login is left to protect.
  }
  lock.lock();
  m_tokenBusy = false;
  invalidateObjects();  // private objects are hidden again
  m_tokenIdle.notify_all();
  descriptionChanged();
}

std::optional<CK_USER_TYPE> TokenState::loginOf(ClientNumber client) {
  std::lock_guard lock(m_loginMutex);
  if (auto it = m_loggedIn.find(client); it != m_loggedIn.end()) {
    return it->second;
  }
  return std::nullopt;
}

std::uint32_t TokenState::loggedInClientCount() {
  std::lock_guard lock(m_loginMutex);
  return static_cast<std::uint32_t>(m_loggedIn.size());
}

void TokenState::rethrowLoginFailure() {
  try {
    throw;
  } catch (const Error& error) {
    if (error.kind() != ErrorKind::TokenRemoved) {
      throw;
    }
    tokenRemoved();
    throw Error(CKR_DEVICE_REMOVED, ErrorKind::TokenRemoved, error.what(), error.where());
  }
}

void TokenState::loginLost(bool certain) {
  std::unique_lock lock(m_loginMutex);
  // A token login or logout in progress has no earlier login left to forget.
  if (m_tokenBusy || !m_tokenLogin || (!certain && *m_tokenLogin != CKU_USER)) {
    return;
  }
  logWarning("slot " + std::to_string(m_slotId) + ": the token lost its login (" +
             std::to_string(m_loggedIn.size()) + " clients logged in); they must log in again");
  m_loggedIn.clear();
  m_promptedClients.clear();
  endTokenLogin(lock);
}

void TokenState::pinChanged(const SecureBytes& newPin) {
  std::lock_guard lock(m_loginMutex);
  if (m_tokenLogin == CKU_USER) {
    m_verifier = verifierFor(newPin);
  }
  descriptionChanged();
}

}  // namespace dojang::daemon
