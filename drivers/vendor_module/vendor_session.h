// A token::TokenSession backed by one session of a vendor module. ObjectIds are the module's
// object handles, which PKCS#11 keeps valid across all of our sessions with the token.
#pragma once

#include <memory>
#include <optional>

#include "drivers/token/token.h"
#include "drivers/vendor_module/backend_session.h"
#include "drivers/vendor_module/vendor_module.h"

namespace dojang::vendor {

class VendorSession final : public token::TokenSession {
 public:
  VendorSession(std::shared_ptr<const VendorModule> module, CK_SLOT_ID slot);

  std::vector<token::ObjectId> findObjects(const token::AttributeList& templ) override;
  std::vector<token::AttributeRead> readAttributes(token::ObjectId object,
                                                   std::span<const CK_ATTRIBUTE_TYPE> types) override;
  void writeAttributes(token::ObjectId object, const token::AttributeList& templ) override;
  token::ObjectId createObject(const token::AttributeList& templ) override;
  token::ObjectId copyObject(token::ObjectId object, const token::AttributeList& templ) override;
  void destroyObject(token::ObjectId object) override;
  CK_ULONG objectSize(token::ObjectId object) override;
  token::KeyPair generateKeyPair(const token::Mechanism& mechanism,
                                 const token::AttributeList& publicTemplate,
                                 const token::AttributeList& privateTemplate,
                                 const token::KeyGeneration& target) override;

  void checkKeyOperation(OperationKind kind, const token::Mechanism& mechanism, token::ObjectId key) override;
  // PKCS#11 wants C_Login(CKU_CONTEXT_SPECIFIC) between C_SignInit/C_DecryptInit and C_Sign/
  // C_Decrypt; sign() and decrypt() log in there when `context` says so.
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

  [[nodiscard]] CK_SESSION_HANDLE backendHandle() const noexcept { return m_session.handle(); }

 private:
  struct KeyOperation {
    OperationKind kind = OperationKind::Sign;
    token::Mechanism mechanism;
    token::ObjectId key = 0;
  };

  [[nodiscard]] const VendorModule& module() const noexcept { return m_session.module(); }
  void startOperation(OperationKind kind, const token::Mechanism& mechanism, token::ObjectId key);
  // Starts the operation (unless checkKeyOperation already did) and logs in for it if asked.
  void beginOperation(OperationKind kind, const token::Mechanism& mechanism, token::ObjectId key,
                      const token::ContextLogin& context);
  // True when the operation was already started by checkKeyOperation(); consumes it.
  bool takePrimed(OperationKind kind, const token::Mechanism& mechanism, token::ObjectId key);
  // Ends a primed operation that will not be used (2.40 has no way to cancel but finishing it).
  void abandonPrimed() noexcept;

  CK_SLOT_ID m_slot;
  BackendSession m_session;
  std::optional<KeyOperation> m_primed;
};

}  // namespace dojang::vendor
