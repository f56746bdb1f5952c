// A driver's TokenSession as the daemon uses it: every failure passes through here first, so that
// what it means for the token is acted on whichever call met it. A token that went away is marked
// removed at once (and its driver rescanned); a login the token lost ends every client's login.
#pragma once

#include <memory>

#include "drivers/token/token.h"
#include "src/common/errors/error.h"

namespace dojang::daemon {

class TokenState;

class GuardedSession final : public token::TokenSession {
 public:
  // `state` owns the token and outlives this session (a ClientSession holds both).
  GuardedSession(std::unique_ptr<token::TokenSession> inner, TokenState& state);

  std::vector<token::ObjectId> findObjects(const token::AttributeList& templ) override;
  std::vector<token::AttributeRead> readAttributes(token::ObjectId object,
                                                   std::span<const CK_ATTRIBUTE_TYPE> types) override;
  void writeAttributes(token::ObjectId object, const token::AttributeList& templ) override;
  token::ObjectId createObject(const token::AttributeList& templ) override;
  token::ObjectId copyObject(token::ObjectId object, const token::AttributeList& templ) override;
  void destroyObject(token::ObjectId object) override;
  CK_ULONG objectSize(token::ObjectId object) override;
  token::KeyPair generateKeyPair(const token::Mechanism& mechanism, const token::AttributeList& publicTemplate,
                                 const token::AttributeList& privateTemplate,
                                 const token::KeyGeneration& target) override;
  void checkKeyOperation(OperationKind kind, const token::Mechanism& mechanism, token::ObjectId key) override;
  token::Bytes sign(const token::Mechanism& mechanism, token::ObjectId key, std::span<const std::uint8_t> data,
                    const token::ContextLogin& context) override;
  void verify(const token::Mechanism& mechanism, token::ObjectId key, std::span<const std::uint8_t> data,
              std::span<const std::uint8_t> signature) override;
  token::Bytes decrypt(const token::Mechanism& mechanism, token::ObjectId key, std::span<const std::uint8_t> data,
                       const token::ContextLogin& context) override;
  token::Bytes digest(const token::Mechanism& mechanism, std::span<const std::uint8_t> data) override;
  token::Bytes generateRandom(std::size_t length) override;
  void initPin(const SecureBytes& pin) override;
  void setPin(const SecureBytes& oldPin, const SecureBytes& newPin) override;

 private:
  template <class Call>
  auto guarded(Call&& call, token::ObjectId key = 0, bool contextLoginGiven = true) -> decltype(call());
  // Acts on a failure and throws what the client should see.
  [[noreturn]] void failed(const Error& error, token::ObjectId key, bool contextLoginGiven);
  [[nodiscard]] bool wantsContextLogin(token::ObjectId key) noexcept;

  std::unique_ptr<token::TokenSession> m_inner;
  TokenState& m_state;
};

}  // namespace dojang::daemon
