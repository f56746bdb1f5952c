// Everything dojangd knows about one present token: the driver's Token, the cache of objects and
// attributes shared by all clients, and the token-wide login that backs each client's own login.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "secure_bytes.h"
#include "token.h"

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
  ClientNumber owner = 0;  // session objects belong to the client that made them
};

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

  // Token info and mechanisms are read once per token insertion.
  token::TokenDescription description();
  const std::vector<token::MechanismEntry>& mechanisms();
  [[nodiscard]] bool offersMechanism(CK_MECHANISM_TYPE type, CK_FLAGS usage);

  // --- objects (all reads go through the cache) ---
  std::vector<token::ObjectId> find(token::TokenSession& via, const token::AttributeList& templ,
                                    const Viewer& viewer);
  // Throws CKR_OBJECT_HANDLE_INVALID for objects the viewer may not see.
  ObjectFacts factsFor(token::TokenSession& via, token::ObjectId object, const Viewer& viewer);
  std::vector<token::AttributeRead> read(token::TokenSession& via, token::ObjectId object,
                                         std::span<const CK_ATTRIBUTE_TYPE> types, const Viewer& viewer);
  void remember(token::ObjectId object, ClientNumber owner);
  void forgetAttributes(token::ObjectId object);
  void forget(token::ObjectId object);
  void forgetOwnedBy(ClientNumber owner);
  void invalidateObjects();
  [[nodiscard]] std::size_t cachedObjectCount();

  // --- login: the token is logged in while at least one client is ---
  // Logs the client in; the token itself is asked only when nobody else is logged in.
  void login(ClientNumber client, CK_USER_TYPE user, const SecureBytes* pin);
  void logout(ClientNumber client);
  [[nodiscard]] std::optional<CK_USER_TYPE> loginOf(ClientNumber client);
  [[nodiscard]] std::uint32_t loggedInClientCount();
  // After a successful C_SetPIN the remembered verifier must follow the new PIN.
  void pinChanged(const SecureBytes& newPin);

 private:
  struct CachedObject {
    std::optional<ObjectFacts> facts;
    std::map<CK_ATTRIBUTE_TYPE, token::AttributeRead> attributes;
    ClientNumber owner = 0;
  };
  using Verifier = std::array<std::uint8_t, 32>;

  CachedObject& entryLocked(token::ObjectId object);
  const ObjectFacts& factsLocked(token::TokenSession& via, token::ObjectId object);
  void ensureListedLocked(token::TokenSession& via);
  void fetchLocked(token::TokenSession& via, token::ObjectId object, CachedObject& entry,
                   std::span<const CK_ATTRIBUTE_TYPE> types);
  [[nodiscard]] bool visibleLocked(const ObjectFacts& facts, const Viewer& viewer) const;
  Verifier verifierFor(const SecureBytes& pin) const;

  const std::uint64_t m_slotId;
  std::unique_ptr<token::Token> m_token;
  std::atomic<bool> m_removed{false};

  std::mutex m_mutex;  // guards everything below
  std::optional<token::TokenDescription> m_description;
  std::optional<std::vector<token::MechanismEntry>> m_mechanisms;
  bool m_listed = false;
  std::vector<token::ObjectId> m_objectOrder;
  std::unordered_map<token::ObjectId, CachedObject> m_objects;

  std::mutex m_loginMutex;  // guards the login state; taken before m_mutex when both are needed
  std::map<ClientNumber, CK_USER_TYPE> m_loggedIn;
  std::optional<CK_USER_TYPE> m_tokenLogin;
  std::optional<Verifier> m_verifier;
  std::array<std::uint8_t, 32> m_verifierKey{};
  unsigned m_verifierMismatches = 0;
};

}  // namespace dojang::daemon
