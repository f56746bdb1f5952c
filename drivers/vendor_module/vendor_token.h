// A token::Token in one slot of a vendor module. It keeps a control session open for its whole
// lifetime: PKCS#11 login state belongs to the application and token, and lasts only while at
// least one session with the token is open.
#pragma once

#include <memory>
#include <mutex>

#include "drivers/token/token.h"
#include "drivers/vendor_module/backend_session.h"
#include "drivers/vendor_module/vendor_module.h"

namespace dojang::vendor {

class VendorToken final : public token::Token {
 public:
  // Throws Error(CKR_TOKEN_NOT_PRESENT) (or the module's CK_RV) when the token cannot be opened.
  VendorToken(std::shared_ptr<const VendorModule> module, CK_SLOT_ID slot);

  token::TokenDescription describe() override;
  // From CK_TOKEN_INFO's flags: PKCS#11 has no counts, only count-low, final-try and locked.
  token::PinStates pinState() override;
  std::vector<token::MechanismEntry> mechanisms() override;
  std::unique_ptr<token::TokenSession> openSession() override;
  // CKR_USER_ALREADY_LOGGED_IN counts as success. A wrong PIN carries the tries left when the
  // token's flags tell (one on final try, none when locked).
  void login(CK_USER_TYPE user, const SecureBytes* pin) override;
  // CKR_USER_NOT_LOGGED_IN counts as success.
  void logout() override;

  [[nodiscard]] CK_SLOT_ID slotId() const noexcept { return m_slot; }

 private:
  std::shared_ptr<const VendorModule> m_module;
  CK_SLOT_ID m_slot;
  std::mutex m_controlMutex;  // the control session is used by one thread at a time
  BackendSession m_control;
};

}  // namespace dojang::vendor
