#include "drivers/piv/piv_token.h"

#include "drivers/piv/host_crypto.h"

namespace dojang::piv {

token::TokenDescription PivToken::describe() {
  return m_card->description();
}

token::PinStates PivToken::pinState() {
  return m_card->pinStates();
}

std::vector<token::MechanismEntry> PivToken::mechanisms() {
  return pivMechanisms();
}

std::unique_ptr<token::TokenSession> PivToken::openSession() {
  return std::make_unique<PivSession>(m_card);
}

void PivToken::login(CK_USER_TYPE user, const SecureBytes* pin) {
  if (pin == nullptr) {
    fail(CKR_ARGUMENTS_BAD, "a PIV card over PC/SC has no PIN pad here; give the PIN");
  }
  if (user != CKU_USER && user != CKU_SO) {
    fail(CKR_USER_TYPE_INVALID, "a PIV card knows the user (PIN) and the SO (PUK)");
  }
  m_card->loginUser(user, *pin);
}

void PivToken::logout() {
  m_card->logout();
}

void PivToken::authorizeAdministrator(const SecureBytes& credential) {
  m_card->authorizeAdministrator(credential);
}

}  // namespace dojang::piv
