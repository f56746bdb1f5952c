#include "token_state.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>

#include "error.h"
#include "foreign_errors.h"
#include "policy.h"

namespace dojang::daemon {

namespace {
// After this many wrong PINs checked by the daemon (not the token), it stops answering for the
// token until every client has logged out: the token's own retry counter cannot see them.
constexpr unsigned kMaxVerifierMismatches = 3;

constexpr CK_ATTRIBUTE_TYPE kFactTypes[] = {CKA_CLASS, CKA_KEY_TYPE, CKA_PRIVATE, CKA_TOKEN};
}  // namespace

TokenState::TokenState(std::uint64_t slotId, std::unique_ptr<token::Token> token)
    : m_slotId(slotId), m_token(std::move(token)) {
  checkOpensslStatus(RAND_bytes(m_verifierKey.data(), static_cast<int>(m_verifierKey.size())),
                     "RAND_bytes");
}

TokenState::~TokenState() { OPENSSL_cleanse(m_verifierKey.data(), m_verifierKey.size()); }

token::TokenDescription TokenState::description() {
  std::lock_guard lock(m_mutex);
  if (!m_description) {
    m_description = m_token->describe();
  }
  return *m_description;
}

const std::vector<token::MechanismEntry>& TokenState::mechanisms() {
  std::lock_guard lock(m_mutex);
  if (!m_mechanisms) {
    auto all = m_token->mechanisms();
    std::erase_if(all, [](const token::MechanismEntry& m) { return !isServedMechanism(m.type); });
    m_mechanisms = std::move(all);
  }
  return *m_mechanisms;
}

bool TokenState::offersMechanism(CK_MECHANISM_TYPE type, CK_FLAGS usage) {
  const auto& list = mechanisms();
  return std::any_of(list.begin(), list.end(), [&](const token::MechanismEntry& m) {
    return m.type == type && (usage == 0 || (m.info.flags & usage) != 0);
  });
}

TokenState::CachedObject& TokenState::entryLocked(token::ObjectId object) { return m_objects[object]; }

void TokenState::ensureListedLocked(token::TokenSession& via) {
  if (m_listed) {
    return;
  }
  m_objectOrder = via.findObjects({});
  for (auto id : m_objectOrder) {
    m_objects.try_emplace(id);
  }
  m_listed = true;
}

void TokenState::fetchLocked(token::TokenSession& via, token::ObjectId object, CachedObject& entry,
                             std::span<const CK_ATTRIBUTE_TYPE> types) {
  std::vector<CK_ATTRIBUTE_TYPE> missing;
  for (auto type : types) {
    if (!entry.attributes.contains(type) &&
        std::find(missing.begin(), missing.end(), type) == missing.end()) {
      missing.push_back(type);
    }
  }
  if (missing.empty()) {
    return;
  }
  for (auto& read : via.readAttributes(object, missing)) {
    const auto type = read.type;
    entry.attributes.insert_or_assign(type, std::move(read));
  }
}

const ObjectFacts& TokenState::factsLocked(token::TokenSession& via, token::ObjectId object) {
  auto& entry = entryLocked(object);
  if (entry.facts) {
    return *entry.facts;
  }
  try {
    fetchLocked(via, object, entry, kFactTypes);
  } catch (...) {
    m_objects.erase(object);
    throw;
  }
  const auto& classRead = entry.attributes[CKA_CLASS];
  ObjectFacts facts;
  facts.owner = entry.owner;
  if (classRead.status != CKR_OK || !readUlong(classRead.value, facts.objectClass)) {
    m_objects.erase(object);
    fail(CKR_OBJECT_HANDLE_INVALID, "object has no class");
  }
  if (const auto& keyType = entry.attributes[CKA_KEY_TYPE]; keyType.status == CKR_OK) {
    (void)readUlong(keyType.value, facts.keyType);
  }
  if (const auto& isPrivate = entry.attributes[CKA_PRIVATE]; isPrivate.status == CKR_OK) {
    (void)readBool(isPrivate.value, facts.isPrivate);
  }
  if (const auto& isToken = entry.attributes[CKA_TOKEN]; isToken.status == CKR_OK) {
    (void)readBool(isToken.value, facts.isTokenObject);
  }
  entry.facts = facts;
  return *entry.facts;
}

bool TokenState::visibleLocked(const ObjectFacts& facts, const Viewer& viewer) const {
  if (facts.isPrivate && !viewer.loggedIn) {
    return false;
  }
  return facts.isTokenObject || facts.owner == 0 || facts.owner == viewer.client;
}

std::vector<token::ObjectId> TokenState::find(token::TokenSession& via, const token::AttributeList& templ,
                                              const Viewer& viewer) {
  std::lock_guard lock(m_mutex);
  ensureListedLocked(via);
  std::vector<CK_ATTRIBUTE_TYPE> wanted;
  for (const auto& attribute : templ) {
    wanted.push_back(attribute.type);
  }
  std::vector<token::ObjectId> found;
  for (auto id : std::vector<token::ObjectId>(m_objectOrder)) {
    const ObjectFacts* facts = nullptr;
    try {
      facts = &factsLocked(via, id);
    } catch (const Error& error) {
      if (error.rv() == CKR_OBJECT_HANDLE_INVALID) {
        continue;  // gone from the token since it was listed
      }
      throw;
    }
    if (!visibleLocked(*facts, viewer)) {
      continue;
    }
    auto& entry = m_objects[id];
    // Secret attributes are never asked for, so a template naming CKA_VALUE cannot pull a key's
    // value out of a token willing to give it; such a template matches no key.
    std::vector<CK_ATTRIBUTE_TYPE> askable;
    for (auto type : wanted) {
      if (!isSecretAttribute(facts->objectClass, type)) {
        askable.push_back(type);
      }
    }
    fetchLocked(via, id, entry, askable);
    const bool matches = std::all_of(templ.begin(), templ.end(), [&](const token::AttributeValue& want) {
      if (isSecretAttribute(facts->objectClass, want.type)) {
        return false;
      }
      const auto& have = entry.attributes[want.type];
      return have.status == CKR_OK && have.value == want.value;
    });
    if (matches) {
      found.push_back(id);
    }
  }
  std::erase_if(m_objectOrder, [&](token::ObjectId id) { return !m_objects.contains(id); });
  return found;
}

ObjectFacts TokenState::factsFor(token::TokenSession& via, token::ObjectId object, const Viewer& viewer) {
  std::lock_guard lock(m_mutex);
  const auto& facts = factsLocked(via, object);
  if (!visibleLocked(facts, viewer)) {
    fail(CKR_OBJECT_HANDLE_INVALID, "object not visible to this client");
  }
  return facts;
}

std::vector<token::AttributeRead> TokenState::read(token::TokenSession& via, token::ObjectId object,
                                                   std::span<const CK_ATTRIBUTE_TYPE> types,
                                                   const Viewer& viewer) {
  std::lock_guard lock(m_mutex);
  const auto facts = factsLocked(via, object);
  if (!visibleLocked(facts, viewer)) {
    fail(CKR_OBJECT_HANDLE_INVALID, "object not visible to this client");
  }
  std::vector<CK_ATTRIBUTE_TYPE> askable;
  for (auto type : types) {
    if (!isSecretAttribute(facts.objectClass, type)) {
      askable.push_back(type);
    }
  }
  auto& entry = m_objects[object];
  fetchLocked(via, object, entry, askable);
  std::vector<token::AttributeRead> result;
  result.reserve(types.size());
  for (auto type : types) {
    if (isSecretAttribute(facts.objectClass, type)) {
      result.push_back({type, CKR_ATTRIBUTE_SENSITIVE, {}});
    } else {
      result.push_back(entry.attributes[type]);
    }
  }
  return result;
}

void TokenState::remember(token::ObjectId object, ClientNumber owner) {
  std::lock_guard lock(m_mutex);
  auto& entry = m_objects[object];
  entry.owner = owner;
  entry.facts.reset();
  entry.attributes.clear();
  if (m_listed && std::find(m_objectOrder.begin(), m_objectOrder.end(), object) == m_objectOrder.end()) {
    m_objectOrder.push_back(object);
  }
}

void TokenState::forgetAttributes(token::ObjectId object) {
  std::lock_guard lock(m_mutex);
  if (auto it = m_objects.find(object); it != m_objects.end()) {
    it->second.attributes.clear();
    it->second.facts.reset();
  }
}

void TokenState::forget(token::ObjectId object) {
  std::lock_guard lock(m_mutex);
  m_objects.erase(object);
  std::erase(m_objectOrder, object);
}

void TokenState::forgetOwnedBy(ClientNumber owner) {
  std::lock_guard lock(m_mutex);
  std::erase_if(m_objects, [owner](const auto& item) { return item.second.owner == owner; });
  std::erase_if(m_objectOrder, [&](token::ObjectId id) { return !m_objects.contains(id); });
}

void TokenState::invalidateObjects() {
  std::lock_guard lock(m_mutex);
  // Session objects keep their owners; everything else is read again on demand.
  std::erase_if(m_objects, [](const auto& item) { return item.second.owner == 0; });
  for (auto& [id, entry] : m_objects) {
    entry.facts.reset();
    entry.attributes.clear();
  }
  m_listed = false;
  m_objectOrder.clear();
}

std::size_t TokenState::cachedObjectCount() {
  std::lock_guard lock(m_mutex);
  return m_objects.size();
}

TokenState::Verifier TokenState::verifierFor(const SecureBytes& pin) const {
  Verifier out{};
  std::size_t length = 0;
  if (EVP_Q_mac(nullptr, "HMAC", nullptr, "SHA256", nullptr, m_verifierKey.data(), m_verifierKey.size(),
                pin.data(), pin.size(), out.data(), out.size(), &length) == nullptr) {
    throwOpenssl("PIN verifier");
  }
  return out;
}

void TokenState::login(ClientNumber client, CK_USER_TYPE user, const SecureBytes* pin) {
  std::lock_guard lock(m_loginMutex);
  if (m_loggedIn.contains(client)) {
    fail(CKR_USER_ALREADY_LOGGED_IN, "already logged in");
  }
  if (!m_tokenLogin) {
    // The token checks the PIN and counts failures itself. A wrong PIN is never retried.
    m_token->login(user, pin);
    m_tokenLogin = user;
    m_verifier.reset();
    if (pin != nullptr) {
      m_verifier = verifierFor(*pin);
    }
    m_verifierMismatches = 0;
    invalidateObjects();  // private objects exist now
  } else if (*m_tokenLogin != user) {
    fail(CKR_USER_ANOTHER_ALREADY_LOGGED_IN, "the token is logged in as another user type");
  } else if (pin == nullptr) {
    // A protected-path (PIN pad) login cannot be checked while the token is already logged in
    // for someone else; accepting it would hand that login over. Asking the user through
    // pinentry is the daemon's job once PIN prompts land.
    fail(CKR_PIN_INCORRECT, "the token is in use by another program: a PIN is needed to log in");
  } else {
    if (m_verifierMismatches >= kMaxVerifierMismatches) {
      fail(CKR_PIN_LOCKED, "too many wrong PINs while the token is in use; log out everywhere first");
    }
    if (!m_verifier || CRYPTO_memcmp(m_verifier->data(), verifierFor(*pin).data(), m_verifier->size()) != 0) {
      ++m_verifierMismatches;
      fail(CKR_PIN_INCORRECT, "wrong PIN");
    }
    m_verifierMismatches = 0;
  }
  m_loggedIn[client] = user;
}

void TokenState::logout(ClientNumber client) {
  std::lock_guard lock(m_loginMutex);
  if (m_loggedIn.erase(client) == 0) {
    fail(CKR_USER_NOT_LOGGED_IN, "not logged in");
  }
  if (m_loggedIn.empty() && m_tokenLogin) {
    m_tokenLogin.reset();
    m_verifier.reset();
    m_verifierMismatches = 0;
    try {
      m_token->logout();
    } catch (const Error&) {
      // A token that cannot log out (removed) has no login left to protect.
    }
    invalidateObjects();
  }
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

void TokenState::pinChanged(const SecureBytes& newPin) {
  std::lock_guard lock(m_loginMutex);
  if (m_tokenLogin == CKU_USER) {
    m_verifier = verifierFor(newPin);
  }
}

}  // namespace dojang::daemon
