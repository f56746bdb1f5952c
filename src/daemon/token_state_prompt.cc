// TokenState's prompt mode: stand-in private keys (stand_in_keys.h) and the login a PIN prompt
// gives. The prompt itself (pinentry, its texts) is the caller's: TokenState only knows that a
// PIN comes from somewhere and that one prompt per token is open at a time.
#include <algorithm>

#include "src/common/errors/error.h"
#include "src/daemon/policy.h"
#include "src/daemon/token_state.h"

namespace dojang::daemon {

namespace {
constexpr std::chrono::milliseconds kWaiterTick{250};
}

void TokenState::setPinMode(PinMode mode, PinCache cache, std::chrono::seconds cacheLifetime) {
  std::lock_guard lock(m_mutex);
  m_pinMode = mode;
  m_pinCache = cache;
  m_cacheLifetime = cacheLifetime;
  m_descriptionRead = {};
  ++m_descriptionGeneration;
}

void TokenState::refreshStandIns(token::TokenSession& via) {
  std::uint64_t generation = 0;
  {
    std::lock_guard lock(m_mutex);
    if (m_standInsGeneration == m_generation) {
      return;
    }
    generation = m_generation;
  }
  std::vector<std::vector<token::AttributeRead>> sources;
  for (auto id : listing(via)) {
    try {
      const auto facts = factsOf(via, id);
      if (facts.isTokenObject &&
          (facts.objectClass == CKO_PUBLIC_KEY || facts.objectClass == CKO_CERTIFICATE)) {
        sources.push_back(attributesOf(via, id, kKeySourceTypes));
      }
    } catch (const Error& error) {
      if (error.rv() != CKR_OBJECT_HANDLE_INVALID) {
        throw;
      }
    }
  }
  std::lock_guard lock(m_mutex);
  m_standIns.rebuild(sources);
  if (generation == m_generation) {
    m_standInsGeneration = generation;
  }
}

std::vector<StandInKey> TokenState::standIns(token::TokenSession& via) {
  refreshStandIns(via);
  std::lock_guard lock(m_mutex);
  return m_standIns.all();
}

std::optional<StandInKey> TokenState::standIn(token::TokenSession& via, token::ObjectId id) {
  if (m_pinMode != PinMode::Prompt) {
    return std::nullopt;
  }
  // Every use of a stand-in comes here: one key is copied, not the whole set.
  refreshStandIns(via);
  std::lock_guard lock(m_mutex);
  if (const auto* key = m_standIns.find(id)) {
    return *key;
  }
  return std::nullopt;
}

bool TokenState::shownAsStandIn(token::TokenSession& via, token::ObjectId object, const ObjectFacts& facts) {
  if (facts.objectClass != CKO_PRIVATE_KEY) {
    return false;
  }
  static constexpr CK_ATTRIBUTE_TYPE kId[] = {CKA_ID};
  const auto id = attributesOf(via, object, kId);
  if (id.empty() || id[0].status != CKR_OK || id[0].value.empty()) {
    return false;
  }
  refreshStandIns(via);
  std::lock_guard lock(m_mutex);
  return m_standIns.covers(id[0].value, facts.keyType);
}

token::ObjectId TokenState::realKeyFor(token::TokenSession& via, token::ObjectId standInId) {
  const auto key = standIn(via, standInId);
  if (!key) {
    fail(CKR_KEY_HANDLE_INVALID, "no such key");
  }
  std::uint64_t generation = 0;
  {
    std::lock_guard lock(m_mutex);
    if (const auto it = m_realKeys.find(standInId);
        it != m_realKeys.end() && it->second.first == m_generation) {
      return it->second.second;  // every signature comes here: no listing walk each time
    }
    generation = m_generation;
  }
  static constexpr CK_ATTRIBUTE_TYPE kId[] = {CKA_ID};
  for (auto id : listing(via)) {
    try {
      const auto facts = factsOf(via, id);
      if (facts.objectClass != CKO_PRIVATE_KEY || facts.keyType != key->keyType || !facts.isTokenObject) {
        continue;
      }
      const auto reads = attributesOf(via, id, kId);
      if (!reads.empty() && reads[0].status == CKR_OK && reads[0].value == key->keyId) {
        std::lock_guard lock(m_mutex);
        if (m_realKeys.size() > kMaxCachedObjects) {
          m_realKeys.clear();
        }
        m_realKeys[standInId] = {generation, id};
        return id;
      }
    } catch (const Error& error) {
      if (error.rv() != CKR_OBJECT_HANDLE_INVALID) {
        throw;
      }
    }
  }
  fail(CKR_KEY_HANDLE_INVALID, "the token shows no private key for this certificate");
}

token::Bytes TokenState::keyIdOf(token::TokenSession& via, token::ObjectId key, const Viewer& viewer) {
  static constexpr CK_ATTRIBUTE_TYPE kId[] = {CKA_ID};
  const auto reads = read(via, key, kId, viewer);
  return !reads.empty() && reads[0].status == CKR_OK ? reads[0].value : token::Bytes{};
}

void TokenState::promptLogin(ClientNumber client, CK_USER_TYPE user, const PinAsk& ask,
                             const std::function<void()>& stillWaiting) {
  std::unique_lock lock(m_loginMutex);
  for (;;) {
    waitForTokenLocked(lock);
    if (auto it = m_loggedIn.find(client); it != m_loggedIn.end()) {
      if (m_pinCache == PinCache::Timed && m_promptedClients.contains(client) &&
          std::chrono::steady_clock::now() >= m_timedLoginUntil) {
        // The timed cache ran out: this use asks again, checked by the token once nobody is left.
        m_loggedIn.erase(it);
        m_promptedClients.erase(client);
        if (m_loggedIn.empty() && m_tokenLogin) {
          endTokenLogin(lock);
        }
        continue;
      }
      if (it->second != user) {
        fail(CKR_USER_ANOTHER_ALREADY_LOGGED_IN, "already logged in as another user type");
      }
      return;
    }
    if (user == CKU_USER && m_tokenLogin == CKU_USER && m_pinCache == PinCache::Timed &&
        std::chrono::steady_clock::now() < m_timedLoginUntil) {
      m_loggedIn[client] = user;  // the PIN typed a moment ago still counts (cache = "timed")
      m_promptedClients.insert(client);
      return;
    }
    if (!m_promptOpen) {
      break;
    }
    // Someone else's prompt for this token is open: its answer is ours too.
    const auto round = m_promptRound;
    while (m_promptOpen && m_promptRound == round) {
      m_promptClosed.wait_for(lock, kWaiterTick);
      lock.unlock();
      stillWaiting();  // throws when this client has gone
      lock.lock();
    }
    if (m_promptOutcome != CKR_OK) {
      fail(m_promptOutcome, m_promptFailure);
    }
    if (m_tokenLogin == user && user == CKU_USER) {
      m_loggedIn[client] = user;
      m_promptedClients.insert(client);
      descriptionChanged();
      return;
    }
  }
  m_promptOpen = true;
  ++m_promptRound;
  lock.unlock();
  CK_RV outcome = CKR_OK;
  std::string failure;
  std::exception_ptr error;
  try {
    const auto pin = ask(user == CKU_SO ? m_token->pinState().so : m_token->pinState().user);
    login(client, user, &pin);
  } catch (const Error& thrown) {
    outcome = thrown.rv();
    failure = thrown.what();
    error = std::current_exception();
  } catch (...) {
    outcome = CKR_FUNCTION_FAILED;
    failure = "the PIN prompt failed";
    error = std::current_exception();
  }
  lock.lock();
  m_promptOpen = false;
  m_promptOutcome = outcome;
  if (outcome == CKR_OK) {
    m_promptedClients.insert(client);
  }
  m_promptFailure = failure;
  if (outcome == CKR_OK && m_pinCache == PinCache::Timed) {
    m_timedLoginUntil = std::chrono::steady_clock::now() + m_cacheLifetime;
  }
  m_promptClosed.notify_all();
  lock.unlock();
  if (error) {
    std::rethrow_exception(error);
  }
}

bool TokenState::isPromptedLogin(ClientNumber client) {
  std::lock_guard lock(m_loginMutex);
  return m_promptedClients.contains(client);
}

void TokenState::endPromptedUse(ClientNumber client) {
  {
    std::lock_guard lock(m_loginMutex);
    if (m_pinCache != PinCache::Off || !m_promptedClients.contains(client)) {
      return;
    }
  }
  try {
    logout(client);
  } catch (const Error&) {
    // Logged out meanwhile (the token went away, or lost its login): nothing is left to end.
  }
}

}  // namespace dojang::daemon
