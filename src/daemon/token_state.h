// Everything dojangd knows about one present token: the driver's Token, the cache of objects and
// attributes shared by all clients, and the token-wide login that backs each client's own login.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "drivers/token/secure_bytes.h"
#include "drivers/token/token.h"
#include "src/common/cryptoki/operation_kind.h"
#include "src/daemon/pin_settings.h"
#include "src/daemon/stand_in_keys.h"

namespace dojang::daemon {

using ClientNumber = std::uint64_t;  // a client process, as numbered by the daemon

// Who is asking: decides which objects exist for the caller.
struct Viewer {
  ClientNumber client = 0;
  bool loggedIn = false;
};

// The facts the daemon checks on every use of an object, read once and kept.
struct ObjectFacts {
  CK_OBJECT_CLASS objectClass = ~CK_OBJECT_CLASS{0};
  CK_KEY_TYPE keyType = ~CK_KEY_TYPE{0};
  bool isPrivate = false;
  bool isTokenObject = true;
  // CKA_SIGN, CKA_VERIFY, CKA_DECRYPT: false for objects that are not keys.
  bool canSign = false;
  bool canVerify = false;
  bool canDecrypt = false;
  ClientNumber owner = 0;  // session objects belong to the client that made them; 0: unknown

  [[nodiscard]] bool allows(OperationKind kind) const noexcept {
    switch (kind) {
      case OperationKind::Sign:
        return canSign;
      case OperationKind::Verify:
        return canVerify;
      case OperationKind::Decrypt:
        return canDecrypt;
      case OperationKind::Digest:
        break;
    }
    return false;
  }
};

// What the attribute cache holds, for tests and status.
struct CacheStats {
  std::size_t objects = 0;
  std::size_t attributes = 0;
  std::size_t bytes = 0;
};

// Bounds on what one token's cache keeps. When one is reached the daemon stops caching and asks
// the token instead; requests never fail because of them.
inline constexpr std::size_t kMaxCachedObjects = 4096;
inline constexpr std::size_t kMaxCachedAttributesPerObject = 128;
inline constexpr std::size_t kMaxCachedInvalidPerObject = 16;  // CKR_ATTRIBUTE_TYPE_INVALID answers
inline constexpr std::size_t kMaxCachedBytes = 16u << 20;
// Token flags (PIN count low, final try, locked) change behind the daemon's back too.
inline constexpr std::chrono::milliseconds kDescriptionLifetime{1000};

class TokenState final {
 public:
  TokenState(std::uint64_t slotId, std::unique_ptr<token::Token> token);
  TokenState(const TokenState&) = delete;
  TokenState& operator=(const TokenState&) = delete;
  ~TokenState();

  [[nodiscard]] std::uint64_t slotId() const noexcept { return m_slotId; }
  [[nodiscard]] token::Token& token() noexcept { return *m_token; }
  [[nodiscard]] bool removed() const noexcept { return m_removed.load(); }
  void markRemoved() noexcept { m_removed = true; }
  // The token went away under a call: marked removed at once, then the removal handler runs
  // (the slot table rescans the driver). Runs the handler only the first time.
  void tokenRemoved();
  void setRemovalHandler(std::function<void()> handler);
  // A backend session whose failures act on this token (GuardedSession; defined beside it).
  std::unique_ptr<token::TokenSession> openSession();

  // Token info is read again after login changes and PIN changes, and otherwise when it is older
  // than kDescriptionLifetime; its PIN flags (user and SO count low, final try, locked) come from
  // the token's PIN state, read with it. Mechanisms are read once per token insertion.
  token::TokenDescription description();
  void descriptionChanged() noexcept;
  const std::vector<token::MechanismEntry>& mechanisms();
  [[nodiscard]] bool offersMechanism(CK_MECHANISM_TYPE type, CK_FLAGS usage);

  // --- objects (all reads go through the cache; the token is asked without the cache locked) ---
  std::vector<token::ObjectId> find(token::TokenSession& via, const token::AttributeList& templ,
                                    const Viewer& viewer);
  // Throws CKR_OBJECT_HANDLE_INVALID for objects the viewer may not see.
  ObjectFacts factsFor(token::TokenSession& via, token::ObjectId object, const Viewer& viewer);
  std::vector<token::AttributeRead> read(token::TokenSession& via, token::ObjectId object,
                                         std::span<const CK_ATTRIBUTE_TYPE> types, const Viewer& viewer);
  // A new object made through the daemon; owner 0 for token objects. Owners of session objects
  // are kept apart from the cache and never evicted.
  void remember(token::ObjectId object, ClientNumber owner);
  void forgetAttributes(token::ObjectId object);
  void forget(token::ObjectId object);
  void forgetOwnedBy(ClientNumber owner);
  void invalidateObjects();
  [[nodiscard]] std::size_t cachedObjectCount();
  [[nodiscard]] CacheStats cacheStats();

  // --- prompt mode (pin_settings.h): set once, when the slot table opens the token ---
  void setPinMode(PinMode mode, PinCache cache, std::chrono::seconds cacheLifetime);
  [[nodiscard]] PinMode pinMode() const noexcept { return m_pinMode; }
  [[nodiscard]] PinCache pinCache() const noexcept { return m_pinCache; }
  // The real private key behind a stand-in, found by CKA_ID and key type among the objects the
  // logged-in token shows. Throws CKR_KEY_HANDLE_INVALID when there is none.
  token::ObjectId realKeyFor(token::TokenSession& via, token::ObjectId standIn);
  // The stand-in's CKA_ID, or the CKA_ID of a real key: which certificate the key belongs to.
  token::Bytes keyIdOf(token::TokenSession& via, token::ObjectId key, const Viewer& viewer);

  // Prompt mode: logs `client` in as `user` with a PIN from `ask`, unless it is logged in
  // already (or a timed cache covers it). One prompt per token at a time: a client that comes
  // while one is open calls `stillWaiting` about every 250 ms (it throws to give up) and shares
  // that prompt's outcome, logged in with it, or failing with its error.
  using PinAsk = std::function<SecureBytes(const token::PinState& pin)>;
  void promptLogin(ClientNumber client, CK_USER_TYPE user, const PinAsk& ask,
                   const std::function<void()>& stillWaiting);
  [[nodiscard]] bool isPromptedLogin(ClientNumber client);
  // Prompt mode with the cache off: the login a prompt gave lasts one operation.
  void endPromptedUse(ClientNumber client);

  // --- login: the token is logged in while at least one client is ---
  // Logs the client in; the token itself is asked only when nobody else is logged in. The
  // token's login runs without the login state locked: other clients' calls go on, and only
  // other logins wait for it.
  void login(ClientNumber client, CK_USER_TYPE user, const SecureBytes* pin);
  void logout(ClientNumber client);
  [[nodiscard]] std::optional<CK_USER_TYPE> loginOf(ClientNumber client);
  [[nodiscard]] std::uint32_t loggedInClientCount();
  // After a successful C_SetPIN the remembered verifier must follow the new PIN.
  void pinChanged(const SecureBytes& newPin);
  // The token lost its login (ErrorKind::LoginLost: a card reset; `certain` false: a call said
  // CKR_USER_NOT_LOGGED_IN, which counts only while the token is logged in as the user). Every
  // client's login on the token ends; they get CKR_USER_NOT_LOGGED_IN and log in again, and the
  // next login is checked by the token itself.
  void loginLost(bool certain);

 private:
  struct CachedObject {
    std::optional<ObjectFacts> facts;  // owner is not kept here but in m_owners
    std::map<CK_ATTRIBUTE_TYPE, token::AttributeRead> attributes;
    std::size_t invalidCount = 0;
    std::size_t bytes = 0;
  };
  using Verifier = std::array<std::uint8_t, 32>;

  // Object list and facts, from the cache or from the token.
  std::vector<token::ObjectId> listing(token::TokenSession& via);
  ObjectFacts factsOf(token::TokenSession& via, token::ObjectId object);
  // The reads of `types`, in that order, from the cache or from the token.
  std::vector<token::AttributeRead> attributesOf(token::TokenSession& via, token::ObjectId object,
                                                 std::span<const CK_ATTRIBUTE_TYPE> types);
  void storeLocked(token::ObjectId object, const token::AttributeRead& read);
  void dropLocked(token::ObjectId object);  // the object is gone from the token
  void clearAttributesLocked(CachedObject& entry);
  [[nodiscard]] ClientNumber ownerLocked(token::ObjectId object) const;
  [[nodiscard]] static bool visible(const ObjectFacts& facts, const Viewer& viewer);
  // Builds the stand-ins again when the token's objects changed since they were built.
  void refreshStandIns(token::TokenSession& via);
  // The stand-ins for the token's current objects.
  std::vector<StandInKey> standIns(token::TokenSession& via);
  [[nodiscard]] std::optional<StandInKey> standIn(token::TokenSession& via, token::ObjectId id);
  // A real private key that a stand-in shows instead (prompt mode): hidden from listings.
  bool shownAsStandIn(token::TokenSession& via, token::ObjectId object, const ObjectFacts& facts);
  Verifier verifierFor(const SecureBytes& pin) const;
  void waitForTokenLocked(std::unique_lock<std::mutex>& lock);
  // Inside a catch of the token's login: a removed token is marked so and said as CKR_DEVICE_REMOVED.
  [[noreturn]] void rethrowLoginFailure();
  // Logs the token out (m_loginMutex held by `lock`, released while the token works) and hides
  // private objects again; the next login is checked by the token.
  void endTokenLogin(std::unique_lock<std::mutex>& lock);

  const std::uint64_t m_slotId;
  std::unique_ptr<token::Token> m_token;
  std::atomic<bool> m_removed{false};
  std::mutex m_handlerMutex;
  std::function<void()> m_removalHandler;

  std::mutex m_mutex;  // guards everything below up to m_loginMutex; never held across a token call
  std::optional<token::TokenDescription> m_description;
  std::chrono::steady_clock::time_point m_descriptionRead;
  std::uint64_t m_descriptionGeneration = 0;
  std::optional<std::vector<token::MechanismEntry>> m_mechanisms;
  // Bumped by every change; a read from the token that started earlier is not cached.
  std::uint64_t m_generation = 0;
  bool m_listed = false;
  std::vector<token::ObjectId> m_objectOrder;
  std::unordered_map<token::ObjectId, CachedObject> m_objects;
  std::size_t m_cachedBytes = 0;
  std::unordered_map<token::ObjectId, ClientNumber> m_owners;  // session objects made through us
  StandInKeys m_standIns;
  std::optional<std::uint64_t> m_standInsGeneration;  // m_generation they were built at
  // Stand-in -> (m_generation when found, real private key).
  std::unordered_map<token::ObjectId, std::pair<std::uint64_t, token::ObjectId>> m_realKeys;

  PinMode m_pinMode = PinMode::Application;
  PinCache m_pinCache = PinCache::PerConnection;
  std::chrono::seconds m_cacheLifetime{300};

  std::mutex m_loginMutex;  // guards the login state; taken before m_mutex when both are needed
  std::condition_variable m_tokenIdle;
  bool m_tokenBusy = false;  // a token login or logout runs without m_loginMutex held
  std::map<ClientNumber, CK_USER_TYPE> m_loggedIn;
  std::optional<CK_USER_TYPE> m_tokenLogin;
  std::optional<Verifier> m_verifier;
  std::array<std::uint8_t, 32> m_verifierKey{};
  // Wrong PINs checked by the daemon alone. Only a login the token itself checked resets it.
  unsigned m_verifierMismatches = 0;
  // The prompt open for this token, if any, and how the last one ended (for its waiters).
  bool m_promptOpen = false;
  std::uint64_t m_promptRound = 0;
  CK_RV m_promptOutcome = CKR_OK;
  std::string m_promptFailure;
  std::condition_variable m_promptClosed;
  // Timed cache: until then, any client of the token is logged in without a prompt.
  std::chrono::steady_clock::time_point m_timedLoginUntil{};
  std::set<ClientNumber> m_promptedClients;  // logged in by a prompt, not by C_Login with a PIN
};

// Token flags follow PIN checks (count low, final try, locked): a PIN check reads them again
// when it ends, whether it succeeded or not.
class DescriptionRefresh final {
 public:
  explicit DescriptionRefresh(TokenState& token) : m_token(token) {}
  DescriptionRefresh(const DescriptionRefresh&) = delete;
  DescriptionRefresh& operator=(const DescriptionRefresh&) = delete;
  ~DescriptionRefresh() { m_token.descriptionChanged(); }

 private:
  TokenState& m_token;
};

}  // namespace dojang::daemon
