#include "drivers/vendor_module/vendor_token.h"

#include <optional>
#include <string>
#include <utility>

#include "drivers/vendor_module/vendor_session.h"
#include "src/common/cryptoki/padded_text.h"
#include "src/common/cryptoki/two_call_list.h"

namespace dojang::vendor {

VendorToken::VendorToken(std::shared_ptr<const VendorModule> module, CK_SLOT_ID slot)
    : m_module(std::move(module)), m_slot(slot), m_control(m_module, slot) {}

token::TokenDescription VendorToken::describe() {
  CK_TOKEN_INFO info{};
  m_module->check("C_GetTokenInfo", &CK_FUNCTION_LIST::C_GetTokenInfo, m_slot, &info);
  token::TokenDescription description;
  description.label = paddedText(info.label);
  description.manufacturer = paddedText(info.manufacturerID);
  description.model = paddedText(info.model);
  description.serialNumber = paddedText(info.serialNumber);
  description.flags = info.flags;
  description.maxPinLen = info.ulMaxPinLen;
  description.minPinLen = info.ulMinPinLen;
  description.totalPublicMemory = info.ulTotalPublicMemory;
  description.freePublicMemory = info.ulFreePublicMemory;
  description.totalPrivateMemory = info.ulTotalPrivateMemory;
  description.freePrivateMemory = info.ulFreePrivateMemory;
  description.hardwareVersion = info.hardwareVersion;
  description.firmwareVersion = info.firmwareVersion;
  return description;
}

namespace {
token::PinState pinStateFrom(CK_FLAGS flags, CK_FLAGS countLow, CK_FLAGS finalTry, CK_FLAGS locked) {
  token::PinState state;
  state.locked = (flags & locked) != 0;
  state.finalTry = (flags & finalTry) != 0;
  state.countLow = (flags & countLow) != 0 || state.finalTry;
  if (state.locked) {
    state.retriesLeft = 0;
  } else if (state.finalTry) {
    state.retriesLeft = 1;
  }
  return state;
}
}  // namespace

token::PinStates VendorToken::pinState() {
  CK_TOKEN_INFO info{};
  m_module->check("C_GetTokenInfo", &CK_FUNCTION_LIST::C_GetTokenInfo, m_slot, &info);
  return {pinStateFrom(info.flags, CKF_USER_PIN_COUNT_LOW, CKF_USER_PIN_FINAL_TRY, CKF_USER_PIN_LOCKED),
          pinStateFrom(info.flags, CKF_SO_PIN_COUNT_LOW, CKF_SO_PIN_FINAL_TRY, CKF_SO_PIN_LOCKED)};
}

std::vector<token::MechanismEntry> VendorToken::mechanisms() {
  const auto getMechanismList = [&](CK_MECHANISM_TYPE_PTR out, CK_ULONG_PTR count) {
    return m_module->call(&CK_FUNCTION_LIST::C_GetMechanismList, m_slot, out, count);
  };
  std::vector<CK_MECHANISM_TYPE> types;
  checkCkRv(readTwoCallList(types, getMechanismList), "C_GetMechanismList");
  std::vector<token::MechanismEntry> entries;
  entries.reserve(types.size());
  for (CK_MECHANISM_TYPE type : types) {
    token::MechanismEntry entry;
    entry.type = type;
    m_module->check("C_GetMechanismInfo", &CK_FUNCTION_LIST::C_GetMechanismInfo, m_slot, type, &entry.info);
    entries.push_back(entry);
  }
  return entries;
}

std::unique_ptr<token::TokenSession> VendorToken::openSession() {
  return std::make_unique<VendorSession>(m_module, m_slot);
}

void VendorToken::login(CK_USER_TYPE user, const SecureBytes* pin) {
  static CK_UTF8CHAR empty[1] = {0};
  CK_UTF8CHAR_PTR pinData = nullptr;  // NULL: protected authentication path
  CK_ULONG pinLength = 0;
  if (pin != nullptr) {
    // Modules never write through the PIN pointer; 2.40 just declares it non-const.
    pinData = pin->empty() ? empty : const_cast<CK_UTF8CHAR_PTR>(pin->data());
    pinLength = static_cast<CK_ULONG>(pin->size());
  }
  const std::lock_guard lock(m_controlMutex);
  const CK_RV rv = m_module->call(&CK_FUNCTION_LIST::C_Login, m_control.handle(), user, pinData, pinLength);
  if (rv == CKR_USER_ALREADY_LOGGED_IN) {
    return;
  }
  if (rv == CKR_PIN_INCORRECT) {
    std::optional<unsigned> left;
    try {
      const auto pins = pinState();
      left = (user == CKU_SO ? pins.so : pins.user).retriesLeft;
    } catch (const Error&) {
      // The wrong PIN is what the caller must hear about, not this.
    }
    std::string message = "C_Login failed: CKR_PIN_INCORRECT";
    if (left) {
      message += " (" + std::to_string(*left) + " tries left)";
    }
    throw Error(rv, ErrorKind::PinIncorrect, message, left);
  }
  checkCkRv(rv, "C_Login");
}

void VendorToken::logout() {
  const std::lock_guard lock(m_controlMutex);
  const CK_RV rv = m_module->call(&CK_FUNCTION_LIST::C_Logout, m_control.handle());
  if (rv == CKR_USER_NOT_LOGGED_IN) {
    return;
  }
  checkCkRv(rv, "C_Logout");
}

}  // namespace dojang::vendor
