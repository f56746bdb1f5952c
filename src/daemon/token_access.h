// One client's use of a token through one of its sessions, with dojangd's policy applied. This
// is the one place where finding, reading, writing, creating, copying and destroying objects,
// generating key pairs and using keys are checked: read-write sessions for token objects, logins
// for keys and private objects, forced protection on private and secret keys (sensitive, never
// extractable, private), protection never loosened, templates well formed, mechanisms served and
// offered, keys of the right class, type and usage. Underneath, TokenState hides objects a viewer
// may not see and never hands out secret attributes.
//
// Service calls it for wire clients; the daemon's own work (PIN prompts, the renewal scheduler)
// calls it with the daemon's client. Arguments and results are token types, never wire types.
// Drivers only do what their token does; what dojang allows is decided here.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "drivers/token/token.h"
#include "src/common/cryptoki/operation_kind.h"
#include "src/daemon/client.h"
#include "src/daemon/prompt_need.h"

namespace dojang::daemon {

class TokenAccess final {
 public:
  // Both outlive the TokenAccess. Each method takes the session's mutex for its token calls (one
  // operation at a time per session); the caller must not hold it.
  // `prompt`: how this call asks for a PIN on a prompt-mode token; nullptr when nobody can be
  // asked (the daemon's own client), which then needs a login as in application mode.
  TokenAccess(Client& client, ClientSession& session, const PromptAccess* prompt = nullptr)
      : m_client(client), m_session(session), m_prompt(prompt) {}
  TokenAccess(const TokenAccess&) = delete;
  TokenAccess& operator=(const TokenAccess&) = delete;

  [[nodiscard]] Viewer viewer() const;
  // CKR_USER_NOT_LOGGED_IN unless the client is logged in to the session's token.
  void requireLogin() const;
  // Prompt mode: logs the client in through the PIN prompt unless it is; `key` (0: none) names
  // the certificate whose holder the prompt shows. Application mode: requireLogin().
  void loginOrPrompt(const char* operation, token::ObjectId key = 0);

  std::vector<token::ObjectId> find(const token::AttributeList& templ);
  std::vector<token::AttributeRead> read(token::ObjectId object, std::span<const CK_ATTRIBUTE_TYPE> types);
  void write(token::ObjectId object, const token::AttributeList& templ);
  // `templ` may be changed (key protection forced). The caller wipes it: it may hold key bytes.
  token::ObjectId create(token::AttributeList& templ);
  token::ObjectId copy(token::ObjectId object, const token::AttributeList& templ);
  void destroy(token::ObjectId object);
  CK_ULONG objectSize(token::ObjectId object);
  // The private template gets the forced key protection; the CKA_ID in it names the target a
  // card generates into.
  token::KeyPair generateKeyPair(const token::Mechanism& mechanism, token::AttributeList& publicTemplate,
                                 token::AttributeList& privateTemplate);

  // C_SignInit, C_VerifyInit, C_DecryptInit: dojang's checks, then the token's own. A PIN given
  // for a context-specific login before this is dropped: it was not for this operation.
  void checkKeyOperation(OperationKind kind, const token::Mechanism& mechanism, token::ObjectId key);
  // Sign and decrypt use the context-specific login given since the check, once.
  token::Bytes sign(const token::Mechanism& mechanism, token::ObjectId key,
                    std::span<const std::uint8_t> data);
  void verify(const token::Mechanism& mechanism, token::ObjectId key, std::span<const std::uint8_t> data,
              std::span<const std::uint8_t> signature);
  token::Bytes decrypt(const token::Mechanism& mechanism, token::ObjectId key,
                       std::span<const std::uint8_t> data);
  token::Bytes digest(const token::Mechanism& mechanism, std::span<const std::uint8_t> data);
  token::Bytes random(std::size_t length);

 private:
  // The object the backend knows: a stand-in key (prompt mode) becomes the real key, after the
  // PIN prompt that makes it visible.
  token::ObjectId backendObject(token::ObjectId object, const char* operation);
  // The DER of the certificate that shares this CKA_ID, or nothing.
  token::Bytes certificateWithId(const token::Bytes& keyId);
  // CKR_SESSION_READ_ONLY for a change to token objects in a read-only session.
  void requireReadWriteFor(bool tokenObjects, const char* what) const;
  // A new object of the client's: session objects belong to it and die with the session.
  void adopt(token::ObjectId object, bool tokenObject);
  // The checks every key operation makes, from cached facts: cheap enough for each signature.
  void checkKeyUse(OperationKind kind, const token::Mechanism& mechanism, token::ObjectId key);
  // Runs `run`; when the token wants an administrator credential nobody configured (a PIV
  // management key), asks for it once through the prompt, hands it to the token, runs it again.
  template <class Run>
  decltype(auto) withAdministrator(const char* operation, Run&& run);
  // Prompt mode: the PIN prompt before a private key's first use by this client.
  void loginOrPromptForKey(OperationKind kind, token::ObjectId key);
  template <class Operation>
  token::Bytes runPrivateKeyOperation(OperationKind kind, const token::Mechanism& mechanism,
                                      token::ObjectId key, Operation&& operation);

  Client& m_client;
  ClientSession& m_session;
  const PromptAccess* m_prompt;
};

}  // namespace dojang::daemon
