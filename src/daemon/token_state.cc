#include "src/daemon/token_state.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>

#include "src/common/errors/error.h"
#include "src/common/errors/foreign_errors.h"
#include "src/daemon/log.h"
#include "src/daemon/policy.h"

namespace dojang::daemon {

namespace {

constexpr CK_ATTRIBUTE_TYPE kFactTypes[] = {CKA_CLASS, CKA_KEY_TYPE, CKA_PRIVATE, CKA_TOKEN,
                                            CKA_SIGN,  CKA_VERIFY,   CKA_DECRYPT};
// What one cached attribute costs besides its value, for the cache's byte count.
constexpr std::size_t kAttributeOverhead = 64;

constexpr CK_FLAGS kPinFlags = CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY | CKF_USER_PIN_LOCKED |
                               CKF_SO_PIN_COUNT_LOW | CKF_SO_PIN_FINAL_TRY | CKF_SO_PIN_LOCKED;

CK_FLAGS pinFlags(const token::PinStates& pins) {
  CK_FLAGS flags = 0;
  flags |= pins.user.countLow ? CKF_USER_PIN_COUNT_LOW : 0;
  flags |= pins.user.finalTry ? CKF_USER_PIN_FINAL_TRY : 0;
  flags |= pins.user.locked ? CKF_USER_PIN_LOCKED : 0;
  flags |= pins.so.countLow ? CKF_SO_PIN_COUNT_LOW : 0;
  flags |= pins.so.finalTry ? CKF_SO_PIN_FINAL_TRY : 0;
  flags |= pins.so.locked ? CKF_SO_PIN_LOCKED : 0;
  return flags;
}
}  // namespace

TokenState::TokenState(std::uint64_t slotId, std::unique_ptr<token::Token> token)
    : m_slotId(slotId), m_token(std::move(token)) {
  opensslRandomBytes(m_verifierKey, "RAND_bytes");
}

TokenState::~TokenState() {
  OPENSSL_cleanse(m_verifierKey.data(), m_verifierKey.size());
}

token::TokenDescription TokenState::description() {
  std::uint64_t generation = 0;
  {
    std::lock_guard lock(m_mutex);
    if (m_description && std::chrono::steady_clock::now() - m_descriptionRead < kDescriptionLifetime) {
      return *m_description;
    }
    generation = m_descriptionGeneration;
  }
  token::TokenDescription fresh;
  try {
    fresh = m_token->describe();
    fresh.flags = (fresh.flags & ~kPinFlags) | pinFlags(m_token->pinState());
    if (m_pinMode == PinMode::Prompt) {
      // Applications need not log in; one that still does may give no PIN and let dojangd ask.
      fresh.flags = (fresh.flags & ~CKF_LOGIN_REQUIRED) | CKF_PROTECTED_AUTHENTICATION_PATH;
    }
  } catch (const Error&) {
    std::lock_guard lock(m_mutex);
    if (m_description) {
      return *m_description;  // a token that stops answering keeps what it said last
    }
    throw;
  }
  std::lock_guard lock(m_mutex);
  if (generation == m_descriptionGeneration) {
    m_description = fresh;
    m_descriptionRead = std::chrono::steady_clock::now();
  }
  return fresh;
}

void TokenState::descriptionChanged() noexcept {
  std::lock_guard lock(m_mutex);
  m_descriptionRead = {};
  ++m_descriptionGeneration;
}

const std::vector<token::MechanismEntry>& TokenState::mechanisms() {
  {
    std::lock_guard lock(m_mutex);
    if (m_mechanisms) {
      return *m_mechanisms;  // set once, never changed afterwards
    }
  }
  auto all = m_token->mechanisms();
  std::erase_if(all, [](const token::MechanismEntry& m) { return !isServedMechanism(m.type); });
  std::lock_guard lock(m_mutex);
  if (!m_mechanisms) {
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

// ---- the cache ----

void TokenState::clearAttributesLocked(CachedObject& entry) {
  m_cachedBytes -= entry.bytes;
  entry.attributes.clear();
  entry.invalidCount = 0;
  entry.bytes = 0;
}

void TokenState::dropLocked(token::ObjectId object) {
  if (auto it = m_objects.find(object); it != m_objects.end()) {
    m_cachedBytes -= it->second.bytes;
    m_objects.erase(it);
  }
  std::erase(m_objectOrder, object);
}

void TokenState::storeLocked(token::ObjectId object, const token::AttributeRead& read) {
  auto it = m_objects.find(object);
  if (it == m_objects.end()) {
    if (m_objects.size() >= kMaxCachedObjects) {
      return;
    }
    it = m_objects.try_emplace(object).first;
  }
  auto& entry = it->second;
  const bool invalid = read.status == CKR_ATTRIBUTE_TYPE_INVALID;
  const std::size_t cost = read.value.size() + kAttributeOverhead;
  if (entry.attributes.contains(read.type) || entry.attributes.size() >= kMaxCachedAttributesPerObject ||
      (invalid && entry.invalidCount >= kMaxCachedInvalidPerObject) ||
      m_cachedBytes + cost > kMaxCachedBytes) {
    return;  // full: the token is asked again next time
  }
  entry.attributes.emplace(read.type, read);
  entry.invalidCount += invalid ? 1 : 0;
  entry.bytes += cost;
  m_cachedBytes += cost;
}

ClientNumber TokenState::ownerLocked(token::ObjectId object) const {
  const auto it = m_owners.find(object);
  return it == m_owners.end() ? 0 : it->second;
}

std::vector<token::ObjectId> TokenState::listing(token::TokenSession& via) {
  std::uint64_t generation = 0;
  {
    std::lock_guard lock(m_mutex);
    if (m_listed) {
      return m_objectOrder;
    }
    generation = m_generation;
  }
  auto ids = via.findObjects({});
  std::lock_guard lock(m_mutex);
  if (m_listed) {
    return m_objectOrder;
  }
  if (generation == m_generation) {
    m_objectOrder = ids;
    m_listed = true;
  }
  return ids;
}

ObjectFacts TokenState::factsOf(token::TokenSession& via, token::ObjectId object) {
  std::uint64_t generation = 0;
  {
    std::lock_guard lock(m_mutex);
    if (auto it = m_objects.find(object); it != m_objects.end() && it->second.facts) {
      auto facts = *it->second.facts;
      facts.owner = ownerLocked(object);
      return facts;
    }
    generation = m_generation;
  }
  std::vector<token::AttributeRead> reads;
  try {
    reads = via.readAttributes(object, kFactTypes);
  } catch (const Error& error) {
    if (error.rv() == CKR_OBJECT_HANDLE_INVALID) {
      std::lock_guard lock(m_mutex);
      dropLocked(object);
    }
    throw;
  }
  ObjectFacts facts;
  std::lock_guard lock(m_mutex);
  if (reads.size() != std::size(kFactTypes) || reads[0].status != CKR_OK ||
      !readUlong(reads[0].value, facts.objectClass)) {
    dropLocked(object);
    fail(CKR_OBJECT_HANDLE_INVALID, "object has no class");
  }
  if (reads[1].status == CKR_OK) {
    (void)readUlong(reads[1].value, facts.keyType);
  }
  if (reads[2].status == CKR_OK) {
    (void)readBool(reads[2].value, facts.isPrivate);
  }
  if (reads[3].status == CKR_OK) {
    (void)readBool(reads[3].value, facts.isTokenObject);
  }
  const auto usage = [&](std::size_t index, bool& flag) {
    if (reads[index].status == CKR_OK) {
      (void)readBool(reads[index].value, flag);
    }
  };
  usage(4, facts.canSign);
  usage(5, facts.canVerify);
  usage(6, facts.canDecrypt);
  if (generation == m_generation) {
    for (const auto& read : reads) {
      storeLocked(object, read);
    }
    if (auto it = m_objects.find(object); it != m_objects.end()) {
      it->second.facts = facts;
    }
  }
  facts.owner = ownerLocked(object);
  return facts;
}

std::vector<token::AttributeRead> TokenState::attributesOf(token::TokenSession& via, token::ObjectId object,
                                                           std::span<const CK_ATTRIBUTE_TYPE> types) {
  std::vector<token::AttributeRead> result(types.size());
  std::vector<bool> cached(types.size(), false);
  std::vector<CK_ATTRIBUTE_TYPE> missing;
  std::uint64_t generation = 0;
  {
    std::lock_guard lock(m_mutex);
    const auto entry = m_objects.find(object);
    for (std::size_t i = 0; i < types.size(); ++i) {
      if (entry != m_objects.end()) {
        if (auto it = entry->second.attributes.find(types[i]); it != entry->second.attributes.end()) {
          result[i] = it->second;
          cached[i] = true;
          continue;
        }
      }
      if (std::find(missing.begin(), missing.end(), types[i]) == missing.end()) {
        missing.push_back(types[i]);
      }
    }
    generation = m_generation;
  }
  if (missing.empty()) {
    return result;
  }
  std::vector<token::AttributeRead> reads;
  try {
    reads = via.readAttributes(object, missing);
  } catch (const Error& error) {
    if (error.rv() == CKR_OBJECT_HANDLE_INVALID) {
      std::lock_guard lock(m_mutex);
      dropLocked(object);
    }
    throw;
  }
  if (reads.size() != missing.size()) {
    fail(CKR_DEVICE_ERROR, "the token answered a different number of attributes");
  }
  {
    std::lock_guard lock(m_mutex);
    if (generation == m_generation) {
      for (const auto& read : reads) {
        storeLocked(object, read);
      }
    }
  }
  for (std::size_t i = 0; i < types.size(); ++i) {
    if (!cached[i]) {
      const auto k =
          static_cast<std::size_t>(std::find(missing.begin(), missing.end(), types[i]) - missing.begin());
      result[i] = reads[k];
      result[i].type = types[i];
    }
  }
  return result;
}

bool TokenState::visible(const ObjectFacts& facts, const Viewer& viewer) {
  if (facts.isPrivate && !viewer.loggedIn) {
    return false;
  }
  // A session object whose maker the daemon does not know belongs to nobody it could show it to.
  return facts.isTokenObject || (facts.owner != 0 && facts.owner == viewer.client);
}

std::vector<token::ObjectId> TokenState::find(token::TokenSession& via, const token::AttributeList& templ,
                                              const Viewer& viewer) {
  std::vector<CK_ATTRIBUTE_TYPE> wanted;
  wanted.reserve(templ.size());
  for (const auto& attribute : templ) {
    wanted.push_back(attribute.type);
  }
  std::vector<token::ObjectId> found;
  const bool prompted = m_pinMode == PinMode::Prompt;
  for (auto id : listing(via)) {
    try {
      const auto facts = factsOf(via, id);
      if (!visible(facts, viewer) || (prompted && shownAsStandIn(via, id, facts))) {
        continue;
      }
      // Secret attributes are never asked for, so a template naming CKA_VALUE cannot pull a key's
      // value out of a token willing to give it; such a template matches no key.
      if (std::any_of(wanted.begin(), wanted.end(),
                      [&](CK_ATTRIBUTE_TYPE type) { return isSecretAttribute(facts.objectClass, type); })) {
        continue;
      }
      const auto reads = attributesOf(via, id, wanted);
      bool matches = true;
      for (std::size_t i = 0; i < templ.size() && matches; ++i) {
        matches = reads[i].status == CKR_OK && reads[i].value == templ[i].value;
      }
      if (matches) {
        found.push_back(id);
      }
    } catch (const Error& error) {
      if (error.rv() == CKR_OBJECT_HANDLE_INVALID) {
        continue;  // gone from the token since it was listed; already dropped from the cache
      }
      throw;
    }
  }
  if (prompted) {
    for (const auto& key : standIns(via)) {
      if (key.matches(templ)) {
        found.push_back(key.id);
      }
    }
  }
  return found;
}

ObjectFacts TokenState::factsFor(token::TokenSession& via, token::ObjectId object, const Viewer& viewer) {
  if (isStandIn(object)) {
    const auto key = standIn(via, object);
    if (!key) {
      fail(CKR_OBJECT_HANDLE_INVALID, "no such key");
    }
    ObjectFacts facts;
    facts.objectClass = CKO_PRIVATE_KEY;
    facts.keyType = key->keyType;
    facts.isPrivate = true;
    facts.canSign = key->canSign;
    facts.canDecrypt = key->canDecrypt;
    return facts;
  }
  const auto facts = factsOf(via, object);
  if (!visible(facts, viewer)) {
    fail(CKR_OBJECT_HANDLE_INVALID, "object not visible to this client");
  }
  return facts;
}

std::vector<token::AttributeRead> TokenState::read(token::TokenSession& via, token::ObjectId object,
                                                   std::span<const CK_ATTRIBUTE_TYPE> types,
                                                   const Viewer& viewer) {
  if (isStandIn(object)) {
    const auto key = standIn(via, object);
    if (!key) {
      fail(CKR_OBJECT_HANDLE_INVALID, "no such key");
    }
    std::vector<token::AttributeRead> result;
    result.reserve(types.size());
    for (auto type : types) {
      result.push_back(key->read(type));
    }
    return result;
  }
  const auto facts = factsFor(via, object, viewer);
  std::vector<CK_ATTRIBUTE_TYPE> askable;
  for (auto type : types) {
    if (!isSecretAttribute(facts.objectClass, type)) {
      askable.push_back(type);
    }
  }
  auto reads = attributesOf(via, object, askable);
  std::vector<token::AttributeRead> result;
  result.reserve(types.size());
  std::size_t next = 0;
  for (auto type : types) {
    if (isSecretAttribute(facts.objectClass, type)) {
      result.push_back({type, CKR_ATTRIBUTE_SENSITIVE, {}});
    } else {
      result.push_back(std::move(reads[next++]));
    }
  }
  return result;
}

void TokenState::remember(token::ObjectId object, ClientNumber owner) {
  std::lock_guard lock(m_mutex);
  ++m_generation;
  if (owner != 0) {
    m_owners[object] = owner;
  } else {
    m_owners.erase(object);
  }
  if (auto it = m_objects.find(object); it != m_objects.end()) {
    clearAttributesLocked(it->second);
    it->second.facts.reset();
  }
  if (m_listed && std::find(m_objectOrder.begin(), m_objectOrder.end(), object) == m_objectOrder.end()) {
    m_objectOrder.push_back(object);
  }
}

void TokenState::forgetAttributes(token::ObjectId object) {
  std::lock_guard lock(m_mutex);
  ++m_generation;
  if (auto it = m_objects.find(object); it != m_objects.end()) {
    clearAttributesLocked(it->second);
    it->second.facts.reset();
  }
}

void TokenState::forget(token::ObjectId object) {
  std::lock_guard lock(m_mutex);
  ++m_generation;
  dropLocked(object);
  m_owners.erase(object);
}

void TokenState::forgetOwnedBy(ClientNumber owner) {
  std::lock_guard lock(m_mutex);
  ++m_generation;
  for (auto it = m_owners.begin(); it != m_owners.end();) {
    if (it->second == owner) {
      dropLocked(it->first);
      it = m_owners.erase(it);
    } else {
      ++it;
    }
  }
}

void TokenState::invalidateObjects() {
  std::lock_guard lock(m_mutex);
  // Everything is read again on demand; owners of session objects are kept apart and stay.
  ++m_generation;
  m_objects.clear();
  m_cachedBytes = 0;
  m_listed = false;
  m_objectOrder.clear();
}

std::size_t TokenState::cachedObjectCount() {
  std::lock_guard lock(m_mutex);
  return m_objects.size();
}

CacheStats TokenState::cacheStats() {
  std::lock_guard lock(m_mutex);
  CacheStats stats;
  stats.objects = m_objects.size();
  stats.bytes = m_cachedBytes;
  for (const auto& [id, entry] : m_objects) {
    stats.attributes += entry.attributes.size();
  }
  return stats;
}

}  // namespace dojang::daemon
