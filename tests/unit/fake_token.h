// An in-memory token::Driver, Token and TokenSession for unit tests and the fuzz target; never
// for production. The token behaves like a small real one: a user PIN, private objects hidden
// from the token while it is logged out, session and token objects, and toy "signatures".
// Its state lives in shared structs so that a test can look at it (count login calls, see which
// attributes were asked for) and change it (insert a token, drop a slot) after handing the driver
// or token to the daemon.
#pragma once

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "drivers/token/token.h"
#include "src/common/errors/error.h"

namespace dojang::test {

inline token::Bytes fakeUlongBytes(CK_ULONG value) {
  token::Bytes bytes(sizeof value);
  std::memcpy(bytes.data(), &value, sizeof value);
  return bytes;
}
inline token::Bytes fakeBoolBytes(bool value) { return {static_cast<std::uint8_t>(value ? CK_TRUE : CK_FALSE)}; }

// Holds callers inside the fake token while closed, as a PIN pad or a slow card would.
class FakeGate final {
 public:
  void close() {
    std::lock_guard lock(m_mutex);
    m_open = false;
  }
  void open() {
    {
      std::lock_guard lock(m_mutex);
      m_open = true;
    }
    m_changed.notify_all();
  }
  // Blocks while the gate is closed.
  void pass() {
    std::unique_lock lock(m_mutex);
    ++m_waiting;
    m_changed.notify_all();
    m_changed.wait(lock, [this] { return m_open; });
    --m_waiting;
  }
  // True once `count` callers wait at the closed gate; false after a generous deadline.
  bool waitForWaiters(int count) {
    std::unique_lock lock(m_mutex);
    return m_changed.wait_for(lock, std::chrono::seconds(10), [&] { return m_waiting >= count; });
  }

 private:
  std::mutex m_mutex;
  std::condition_variable m_changed;
  bool m_open = true;
  int m_waiting = 0;
};

// Everything one fake token knows. Guarded by `mutex`; tests read it between calls.
struct FakeTokenState {
  std::mutex mutex;
  std::string label = "fake token";
  std::string pin = "1234";
  std::string soPin = "87654321";
  std::map<token::ObjectId, token::AttributeList> objects;
  token::ObjectId nextObject = 100;
  bool loggedIn = false;
  int loginCalls = 0;
  int logoutCalls = 0;
  int readCalls = 0;
  std::vector<CK_ATTRIBUTE_TYPE> typesAsked;  // every type ever passed to readAttributes
  int signCalls = 0;
  int wrongPins = 0;        // since the last right one; pinState() counts them
  int wrongSoPins = 0;
  unsigned maxPinTries = 10;  // wrong PINs in a row that lock a PIN
  CK_FLAGS extraFlags = 0;  // added to describe()'s flags and pinState(): a change made outside the daemon
  // Failures a test injects into every call that talks to the token: CKR_DEVICE_REMOVED or
  // CKR_TOKEN_NOT_PRESENT (the token went away) while set; a card reset fails the next call with
  // ErrorKind::LoginLost once and leaves the token logged out.
  CK_RV removedWith = CKR_OK;
  bool resetPending = false;
  // What reached sign() and decrypt() as a context-specific login: the PIN, "" for none given.
  std::vector<std::string> contextPins;
  std::optional<token::Bytes> lastIdHint;  // KeyGeneration::idHint of the last generateKeyPair
  bool lastAdminCredential = false;        // whether it named an admin credential
  int describeCalls = 0;
  // Closed by a test to hold login() or readAttributes() inside the token (not under `mutex`).
  FakeGate loginGate;
  FakeGate readGate;
  std::vector<token::MechanismEntry> mechanismList = {
      {CKM_ECDSA, {256, 384, CKF_SIGN | CKF_VERIFY}},
      {CKM_ECDSA_SHA256, {256, 384, CKF_SIGN | CKF_VERIFY}},
      {CKM_SHA256_RSA_PKCS, {2048, 4096, CKF_SIGN | CKF_VERIFY}},
      {CKM_SHA256_RSA_PKCS_PSS, {2048, 4096, CKF_SIGN | CKF_VERIFY}},
      {CKM_RSA_PKCS_OAEP, {2048, 4096, CKF_DECRYPT}},
      {CKM_SHA256, {0, 0, CKF_DIGEST}},
      {CKM_EC_KEY_PAIR_GEN, {256, 384, CKF_GENERATE_KEY_PAIR}},
      {CKM_RSA_PKCS_KEY_PAIR_GEN, {2048, 4096, CKF_GENERATE_KEY_PAIR}},
      {CKM_AES_CBC, {16, 32, CKF_ENCRYPT | CKF_DECRYPT}},  // not served by dojang
  };

  // Adds an object directly (as if it had been on the token all along); returns its id.
  token::ObjectId add(token::AttributeList attributes) {
    std::lock_guard lock(mutex);
    const auto id = nextObject++;
    objects.emplace(id, std::move(attributes));
    return id;
  }
  // A token private key with a CKA_VALUE the token would (wrongly) hand out.
  token::ObjectId addPrivateKey(CK_KEY_TYPE keyType, const std::string& keyLabel) {
    return add({{CKA_CLASS, fakeUlongBytes(CKO_PRIVATE_KEY)},
                {CKA_KEY_TYPE, fakeUlongBytes(keyType)},
                {CKA_PRIVATE, fakeBoolBytes(true)},
                {CKA_TOKEN, fakeBoolBytes(true)},
                {CKA_SIGN, fakeBoolBytes(true)},
                {CKA_LABEL, token::Bytes(keyLabel.begin(), keyLabel.end())},
                {CKA_VALUE, token::Bytes{0xde, 0xad, 0xbe, 0xef}}});
  }
  token::ObjectId addPublicKey(CK_KEY_TYPE keyType, const std::string& keyLabel) {
    return add({{CKA_CLASS, fakeUlongBytes(CKO_PUBLIC_KEY)},
                {CKA_KEY_TYPE, fakeUlongBytes(keyType)},
                {CKA_PRIVATE, fakeBoolBytes(false)},
                {CKA_TOKEN, fakeBoolBytes(true)},
                {CKA_VERIFY, fakeBoolBytes(true)},
                {CKA_LABEL, token::Bytes(keyLabel.begin(), keyLabel.end())}});
  }
  // Another program resets the card: its login is gone, the next call says so.
  void resetCard() {
    std::lock_guard lock(mutex);
    loggedIn = false;
    resetPending = true;
  }
  // Throws what a test injected; called with `mutex` held.
  void checkAliveLocked() {
    if (removedWith != CKR_OK) {
      throw Error(removedWith, ErrorKind::TokenRemoved, "fake token: removed");
    }
    if (resetPending) {
      resetPending = false;
      throw Error(CKR_USER_NOT_LOGGED_IN, ErrorKind::LoginLost, "fake token: the card was reset");
    }
  }
  [[nodiscard]] bool asked(CK_ATTRIBUTE_TYPE type) {
    std::lock_guard lock(mutex);
    return std::find(typesAsked.begin(), typesAsked.end(), type) != typesAsked.end();
  }
};

namespace fake_detail {
inline const token::AttributeValue* findAttribute(const token::AttributeList& list, CK_ATTRIBUTE_TYPE type) {
  for (const auto& attribute : list) {
    if (attribute.type == type) {
      return &attribute;
    }
  }
  return nullptr;
}
inline bool isTrue(const token::AttributeList& list, CK_ATTRIBUTE_TYPE type) {
  const auto* attribute = findAttribute(list, type);
  return attribute != nullptr && attribute->value.size() == 1 && attribute->value[0] != CK_FALSE;
}
inline void put(token::AttributeList& list, CK_ATTRIBUTE_TYPE type, token::Bytes value) {
  std::erase_if(list, [type](const token::AttributeValue& a) { return a.type == type; });
  list.push_back({type, std::move(value)});
}
// A toy signature: key id, then the data reversed. Verifiable, not secure.
inline token::Bytes toySignature(token::ObjectId key, std::span<const std::uint8_t> data) {
  token::Bytes out = fakeUlongBytes(key);
  out.insert(out.end(), data.rbegin(), data.rend());
  return out;
}
}  // namespace fake_detail

class FakeSession final : public token::TokenSession {
 public:
  explicit FakeSession(std::shared_ptr<FakeTokenState> state) : m_state(std::move(state)) {}
  ~FakeSession() override {
    std::lock_guard lock(m_state->mutex);
    for (auto id : m_sessionObjects) {
      m_state->objects.erase(id);
    }
  }

  std::vector<token::ObjectId> findObjects(const token::AttributeList& templ) override {
    std::lock_guard lock(m_state->mutex);
    m_state->checkAliveLocked();
    std::vector<token::ObjectId> found;
    for (const auto& entry : m_state->objects) {
      const auto& attributes = entry.second;  // clang 14 cannot capture structured bindings
      if (!visibleLocked(attributes)) {
        continue;
      }
      const bool matches = std::all_of(templ.begin(), templ.end(), [&](const token::AttributeValue& want) {
        const auto* have = fake_detail::findAttribute(attributes, want.type);
        return have != nullptr && have->value == want.value;
      });
      if (matches) {
        found.push_back(entry.first);
      }
    }
    return found;
  }

  std::vector<token::AttributeRead> readAttributes(token::ObjectId object,
                                                   std::span<const CK_ATTRIBUTE_TYPE> types) override {
    m_state->readGate.pass();
    std::lock_guard lock(m_state->mutex);
    m_state->checkAliveLocked();
    ++m_state->readCalls;
    const auto& attributes = objectLocked(object, CKR_OBJECT_HANDLE_INVALID);
    std::vector<token::AttributeRead> reads;
    for (auto type : types) {
      m_state->typesAsked.push_back(type);
      if (const auto* have = fake_detail::findAttribute(attributes, type)) {
        reads.push_back({type, CKR_OK, have->value});
      } else {
        reads.push_back({type, CKR_ATTRIBUTE_TYPE_INVALID, {}});
      }
    }
    return reads;
  }

  void writeAttributes(token::ObjectId object, const token::AttributeList& templ) override {
    std::lock_guard lock(m_state->mutex);
    auto& attributes = objectLocked(object, CKR_OBJECT_HANDLE_INVALID);
    for (const auto& attribute : templ) {
      fake_detail::put(attributes, attribute.type, attribute.value);
    }
  }

  token::ObjectId createObject(const token::AttributeList& templ) override {
    std::lock_guard lock(m_state->mutex);
    if (fake_detail::findAttribute(templ, CKA_CLASS) == nullptr) {
      fail(CKR_TEMPLATE_INCOMPLETE, "fake token: no CKA_CLASS");
    }
    return addLocked(templ);
  }

  token::ObjectId copyObject(token::ObjectId object, const token::AttributeList& templ) override {
    std::lock_guard lock(m_state->mutex);
    auto copy = objectLocked(object, CKR_OBJECT_HANDLE_INVALID);
    for (const auto& attribute : templ) {
      fake_detail::put(copy, attribute.type, attribute.value);
    }
    return addLocked(copy);
  }

  CK_ULONG objectSize(token::ObjectId object) override {
    std::lock_guard lock(m_state->mutex);
    const auto& attributes = objectLocked(object, CKR_OBJECT_HANDLE_INVALID);
    if (fake_detail::isTrue(attributes, CKA_SENSITIVE)) {
      fail(CKR_INFORMATION_SENSITIVE, "fake token: the size of a sensitive key is not told");
    }
    CK_ULONG size = 0;
    for (const auto& attribute : attributes) {
      size += attribute.value.size();
    }
    return size;
  }

  void destroyObject(token::ObjectId object) override {
    std::lock_guard lock(m_state->mutex);
    (void)objectLocked(object, CKR_OBJECT_HANDLE_INVALID);
    m_state->objects.erase(object);
    std::erase(m_sessionObjects, object);
  }

  token::KeyPair generateKeyPair(const token::Mechanism& mechanism, const token::AttributeList& publicTemplate,
                                 const token::AttributeList& privateTemplate,
                                 const token::KeyGeneration& target) override {
    CK_KEY_TYPE keyType = 0;
    if (mechanism.type == CKM_EC_KEY_PAIR_GEN) {
      keyType = CKK_EC;
    } else if (mechanism.type == CKM_RSA_PKCS_KEY_PAIR_GEN) {
      keyType = CKK_RSA;
    } else {
      fail(CKR_MECHANISM_INVALID, "fake token: no such key generation");
    }
    std::lock_guard lock(m_state->mutex);
    m_state->checkAliveLocked();
    m_state->lastIdHint = target.idHint;
    m_state->lastAdminCredential = target.adminCredential != nullptr;
    if (!m_state->loggedIn) {
      fail(CKR_USER_NOT_LOGGED_IN, "fake token: log in first");
    }
    token::AttributeList publicKey = publicTemplate;
    fake_detail::put(publicKey, CKA_CLASS, fakeUlongBytes(CKO_PUBLIC_KEY));
    fake_detail::put(publicKey, CKA_KEY_TYPE, fakeUlongBytes(keyType));
    if (fake_detail::findAttribute(publicKey, CKA_PRIVATE) == nullptr) {
      fake_detail::put(publicKey, CKA_PRIVATE, fakeBoolBytes(false));
    }
    token::AttributeList privateKey = privateTemplate;
    fake_detail::put(privateKey, CKA_CLASS, fakeUlongBytes(CKO_PRIVATE_KEY));
    fake_detail::put(privateKey, CKA_KEY_TYPE, fakeUlongBytes(keyType));
    fake_detail::put(privateKey, CKA_VALUE, token::Bytes{0x5e, 0xc2, 0xe7});
    const auto publicId = addLocked(publicKey);
    const auto privateId = addLocked(privateKey);
    return {publicId, privateId};
  }

  void checkKeyOperation(OperationKind kind, const token::Mechanism&, token::ObjectId key) override {
    std::lock_guard lock(m_state->mutex);
    const auto& attributes = objectLocked(key, CKR_KEY_HANDLE_INVALID);
    const auto usage = keyUsageAttribute(kind);
    if (!usage || !fake_detail::isTrue(attributes, *usage)) {
      fail(CKR_KEY_FUNCTION_NOT_PERMITTED, "fake token: key usage not allowed");
    }
  }

  token::Bytes sign(const token::Mechanism&, token::ObjectId key, std::span<const std::uint8_t> data,
                    const token::ContextLogin& context) override {
    std::lock_guard lock(m_state->mutex);
    privateKeyUseLocked(key, context);
    ++m_state->signCalls;
    return fake_detail::toySignature(key, data);
  }

  void verify(const token::Mechanism&, token::ObjectId key, std::span<const std::uint8_t> data,
              std::span<const std::uint8_t> signature) override {
    std::lock_guard lock(m_state->mutex);
    (void)objectLocked(key, CKR_KEY_HANDLE_INVALID);
    // Public keys made by generateKeyPair sit just below their private key.
    const auto expected = fake_detail::toySignature(key + 1, data);
    if (!std::equal(expected.begin(), expected.end(), signature.begin(), signature.end())) {
      fail(CKR_SIGNATURE_INVALID, "fake token: bad signature");
    }
  }

  token::Bytes decrypt(const token::Mechanism&, token::ObjectId key, std::span<const std::uint8_t> data,
                       const token::ContextLogin& context) override {
    std::lock_guard lock(m_state->mutex);
    privateKeyUseLocked(key, context);
    return token::Bytes(data.rbegin(), data.rend());
  }

  token::Bytes digest(const token::Mechanism&, std::span<const std::uint8_t> data) override {
    token::Bytes out(32, 0);
    for (std::size_t i = 0; i < data.size(); ++i) {
      out[i % out.size()] = static_cast<std::uint8_t>(out[i % out.size()] * 31u + data[i] + 1u);
    }
    return out;
  }

  token::Bytes generateRandom(std::size_t length) override {
    token::Bytes out(length);
    for (std::size_t i = 0; i < length; ++i) {
      out[i] = static_cast<std::uint8_t>(i * 131u + 7u);
    }
    return out;
  }

  void initPin(const SecureBytes& pin) override {
    std::lock_guard lock(m_state->mutex);
    m_state->pin.assign(pin.data(), pin.data() + pin.size());
  }
  void setPin(const SecureBytes& oldPin, const SecureBytes& newPin) override {
    std::lock_guard lock(m_state->mutex);
    if (std::string(oldPin.data(), oldPin.data() + oldPin.size()) != m_state->pin) {
      ++m_state->wrongPins;
    }
    checkPinLocked(&oldPin);
    m_state->pin.assign(newPin.data(), newPin.data() + newPin.size());
  }

 private:
  // As a card does: a private key needs the login, and one with CKA_ALWAYS_AUTHENTICATE the PIN
  // again for each use.
  void privateKeyUseLocked(token::ObjectId key, const token::ContextLogin& context) {
    m_state->checkAliveLocked();
    m_state->contextPins.push_back(context.given && context.pin != nullptr
                                       ? std::string(context.pin->data(), context.pin->data() + context.pin->size())
                                       : std::string());
    auto it = m_state->objects.find(key);
    if (it != m_state->objects.end() && !m_state->loggedIn && fake_detail::isTrue(it->second, CKA_PRIVATE)) {
      fail(CKR_USER_NOT_LOGGED_IN, "fake token: log in first");
    }
    const auto& attributes = objectLocked(key, CKR_KEY_HANDLE_INVALID);
    if (fake_detail::isTrue(attributes, CKA_ALWAYS_AUTHENTICATE)) {
      if (!context.given) {
        fail(CKR_USER_NOT_LOGGED_IN, "fake token: this key needs the PIN again");
      }
      checkPinLocked(context.pin);
    }
  }
  bool visibleLocked(const token::AttributeList& attributes) const {
    return m_state->loggedIn || !fake_detail::isTrue(attributes, CKA_PRIVATE);
  }
  token::AttributeList& objectLocked(token::ObjectId object, CK_RV missing) {
    auto it = m_state->objects.find(object);
    if (it == m_state->objects.end() || !visibleLocked(it->second)) {
      fail(missing, "fake token: no such object");
    }
    return it->second;
  }
  token::ObjectId addLocked(const token::AttributeList& templ) {
    const auto id = m_state->nextObject++;
    m_state->objects.emplace(id, templ);
    if (!fake_detail::isTrue(templ, CKA_TOKEN)) {
      m_sessionObjects.push_back(id);
    }
    return id;
  }
  void checkPinLocked(const SecureBytes* pin) {
    if (pin == nullptr || std::string(pin->data(), pin->data() + pin->size()) != m_state->pin) {
      fail(CKR_PIN_INCORRECT, "fake token: wrong PIN");
    }
  }

  std::shared_ptr<FakeTokenState> m_state;
  std::vector<token::ObjectId> m_sessionObjects;
};

class FakeToken final : public token::Token {
 public:
  explicit FakeToken(std::shared_ptr<FakeTokenState> state) : m_state(std::move(state)) {}

  token::TokenDescription describe() override {
    std::lock_guard lock(m_state->mutex);
    token::TokenDescription description;
    description.label = m_state->label;
    description.manufacturer = "dojang tests";
    description.model = "fake";
    description.serialNumber = "0001";
    ++m_state->describeCalls;
    description.flags = CKF_LOGIN_REQUIRED | CKF_USER_PIN_INITIALIZED | CKF_TOKEN_INITIALIZED | m_state->extraFlags;
    description.minPinLen = 4;
    description.maxPinLen = 64;
    return description;
  }
  // Exact counts, as a PIV card gives them; extraFlags' PIN bits stand for a change outside.
  token::PinStates pinState() override {
    std::lock_guard lock(m_state->mutex);
    const auto left = [&](int wrong) {
      return static_cast<unsigned>(std::max(0, static_cast<int>(m_state->maxPinTries) - wrong));
    };
    auto user = token::PinState::fromCounts(left(m_state->wrongPins), m_state->maxPinTries);
    auto so = token::PinState::fromCounts(left(m_state->wrongSoPins), m_state->maxPinTries);
    const CK_FLAGS outside = m_state->extraFlags;
    user.countLow |= (outside & CKF_USER_PIN_COUNT_LOW) != 0;
    user.finalTry |= (outside & CKF_USER_PIN_FINAL_TRY) != 0;
    user.locked |= (outside & CKF_USER_PIN_LOCKED) != 0;
    so.countLow |= (outside & CKF_SO_PIN_COUNT_LOW) != 0;
    so.finalTry |= (outside & CKF_SO_PIN_FINAL_TRY) != 0;
    so.locked |= (outside & CKF_SO_PIN_LOCKED) != 0;
    return {user, so};
  }
  std::vector<token::MechanismEntry> mechanisms() override {
    std::lock_guard lock(m_state->mutex);
    return m_state->mechanismList;
  }
  std::unique_ptr<token::TokenSession> openSession() override { return std::make_unique<FakeSession>(m_state); }
  void login(CK_USER_TYPE user, const SecureBytes* pin) override {
    m_state->loginGate.pass();
    std::lock_guard lock(m_state->mutex);
    ++m_state->loginCalls;
    if (m_state->removedWith != CKR_OK) {
      throw Error(m_state->removedWith, ErrorKind::TokenRemoved, "fake token: removed");
    }
    m_state->resetPending = false;  // a fresh login is what a reset card needs
    if (user != CKU_USER && user != CKU_SO) {
      fail(CKR_USER_TYPE_INVALID, "fake token: only CKU_USER and CKU_SO");
    }
    if (m_state->loggedIn) {
      fail(CKR_USER_ALREADY_LOGGED_IN, "fake token: already logged in");
    }
    int& wrong = user == CKU_SO ? m_state->wrongSoPins : m_state->wrongPins;
    if (wrong >= static_cast<int>(m_state->maxPinTries)) {
      fail(CKR_PIN_LOCKED, "fake token: PIN locked");
    }
    const std::string& expected = user == CKU_SO ? m_state->soPin : m_state->pin;
    if (pin == nullptr || std::string(pin->data(), pin->data() + pin->size()) != expected) {
      ++wrong;
      const auto left = static_cast<unsigned>(static_cast<int>(m_state->maxPinTries) - wrong);
      throw Error(CKR_PIN_INCORRECT, ErrorKind::PinIncorrect, "fake token: wrong PIN", std::optional<unsigned>(left));
    }
    wrong = 0;
    m_state->loggedIn = true;
  }
  void logout() override {
    std::lock_guard lock(m_state->mutex);
    ++m_state->logoutCalls;
    if (!m_state->loggedIn) {
      fail(CKR_USER_NOT_LOGGED_IN, "fake token: not logged in");
    }
    m_state->loggedIn = false;
  }

 private:
  std::shared_ptr<FakeTokenState> m_state;
};

// The slots of a fake driver and the tokens in them, changed by tests at will.
struct FakeDriverState {
  std::mutex mutex;
  std::vector<token::SlotDescription> slots;
  std::map<std::string, std::shared_ptr<FakeTokenState>> tokens;  // by slot key
  std::set<std::string> unopenable;  // slot keys whose token fails to open (a broken card)
  int openCalls = 0;

  // Adds (or replaces) a slot; with a token unless `withToken` is false.
  std::shared_ptr<FakeTokenState> addSlot(const std::string& key, bool withToken = true) {
    std::lock_guard lock(mutex);
    std::erase_if(slots, [&](const token::SlotDescription& d) { return d.key == key; });
    token::SlotDescription description;
    description.key = key;
    description.description = "fake slot " + key;
    description.manufacturer = "dojang tests";
    description.flags = CKF_REMOVABLE_DEVICE | (withToken ? CKF_TOKEN_PRESENT : 0);
    slots.push_back(description);
    auto& state = tokens[key];
    if (!state) {
      state = std::make_shared<FakeTokenState>();
      state->label = "token " + key;
    }
    return state;
  }
  void setTokenPresent(const std::string& key, bool present) {
    std::lock_guard lock(mutex);
    for (auto& description : slots) {
      if (description.key == key) {
        description.flags = present ? (description.flags | CKF_TOKEN_PRESENT) : (description.flags & ~CKF_TOKEN_PRESENT);
      }
    }
  }
  void removeSlot(const std::string& key) {
    std::lock_guard lock(mutex);
    std::erase_if(slots, [&](const token::SlotDescription& d) { return d.key == key; });
  }
};

class FakeDriver final : public token::Driver {
 public:
  explicit FakeDriver(std::shared_ptr<FakeDriverState> state, std::string name = "fake")
      : m_state(std::move(state)), m_name(std::move(name)) {}

  [[nodiscard]] std::string name() const override { return m_name; }
  [[nodiscard]] std::string location() const override { return "memory:" + m_name; }
  std::vector<token::SlotDescription> slots() override {
    std::lock_guard lock(m_state->mutex);
    return m_state->slots;
  }
  std::unique_ptr<token::Token> openToken(const std::string& slotKey) override {
    std::lock_guard lock(m_state->mutex);
    ++m_state->openCalls;
    const auto slot = std::find_if(m_state->slots.begin(), m_state->slots.end(),
                                   [&](const token::SlotDescription& d) { return d.key == slotKey; });
    if (slot == m_state->slots.end() || (slot->flags & CKF_TOKEN_PRESENT) == 0) {
      fail(CKR_TOKEN_NOT_PRESENT, "fake driver: no token in " + slotKey);
    }
    if (m_state->unopenable.contains(slotKey)) {
      fail(CKR_TOKEN_NOT_RECOGNIZED, "fake driver: the token in " + slotKey + " does not answer");
    }
    auto& state = m_state->tokens[slotKey];
    if (!state) {
      state = std::make_shared<FakeTokenState>();
    }
    return std::make_unique<FakeToken>(state);
  }
  bool waitForChange() override { return false; }
  void cancelWait() override {}

 private:
  std::shared_ptr<FakeDriverState> m_state;
  std::string m_name;
};

}  // namespace dojang::test
