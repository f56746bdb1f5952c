// Frontend's session and login functions: C_OpenSession to C_SetPin.
#include "pkcs11/frontend.h"

#include <algorithm>
#include <memory>
#include <mutex>

#include "pkcs11/frontend_calls.h"
#include "src/common/wire/codec.h"
#include "src/common/wire/wire_limits.h"

namespace dojang::frontend {

CK_RV Frontend::openSession(CK_SLOT_ID slot, CK_FLAGS flags, CK_SESSION_HANDLE_PTR session) {
  if (session == nullptr) {
    return CKR_ARGUMENTS_BAD;
  }
  wire::OpenSessionReply reply;
  if (CK_RV rv = call<wire::CallId::OpenSession>({slot, flags}, reply); rv != CKR_OK) {
    return rv;
  }
  auto state = std::make_shared<SessionState>();
  state->slot = slot;
  state->flags = flags;
  std::lock_guard lock(m_mutex);
  m_sessions[reply.session] = std::move(state);
  *session = reply.session;
  return CKR_OK;
}

CK_RV Frontend::closeSession(CK_SESSION_HANDLE session) {
  wire::Empty reply;
  const CK_RV rv = sessionCall<wire::CallId::CloseSession>(session, {session}, reply);
  objectsChanged();  // the last session may have logged the client out
  std::lock_guard lock(m_mutex);
  const auto closing = m_sessions.find(session);
  if (closing != m_sessions.end()) {
    const CK_SLOT_ID slot = closing->second->slot;
    m_sessions.erase(closing);
    forgetChecksIfLoggedOutLocked(slot);
  }
  // A daemon that went away has closed the session already.
  return rv == CKR_DEVICE_ERROR ? CKR_OK : rv;
}

CK_RV Frontend::closeAllSessions(CK_SLOT_ID slot) {
  wire::Empty reply;
  const CK_RV rv = call<wire::CallId::CloseAllSessions>({slot}, reply);
  objectsChanged();
  if (rv == CKR_OK || rv == CKR_DEVICE_ERROR) {
    std::lock_guard lock(m_mutex);
    std::erase_if(m_sessions, [slot](const auto& item) { return item.second->slot == slot; });
    forgetChecksIfLoggedOutLocked(slot);
  }
  return rv == CKR_DEVICE_ERROR ? CKR_OK : rv;
}

CK_RV Frontend::getSessionInfo(CK_SESSION_HANDLE session, CK_SESSION_INFO_PTR info) {
  if (info == nullptr) {
    return CKR_ARGUMENTS_BAD;
  }
  wire::GetSessionInfoReply reply;
  if (CK_RV rv = sessionCall<wire::CallId::GetSessionInfo>(session, {session}, reply); rv != CKR_OK) {
    return rv;
  }
  info->slotID = reply.info.slot;
  info->state = reply.info.state;
  info->flags = reply.info.flags;
  info->ulDeviceError = reply.info.deviceError;
  return CKR_OK;
}

CK_RV Frontend::login(CK_SESSION_HANDLE session, CK_USER_TYPE user, CK_UTF8CHAR_PTR pin, CK_ULONG pinLength) {
  if (pin != nullptr && pinLength > wire::kMaxPinBytes) {
    return CKR_PIN_LEN_RANGE;
  }
  wire::LoginRequest request;
  request.session = session;
  request.userType = user;
  request.pinGiven = pin != nullptr;
  if (pin != nullptr) {
    request.pin.assign(pin, pin + pinLength);
  }
  wire::Empty reply;
  const CK_RV rv = user == CKU_CONTEXT_SPECIFIC
                       ? sessionCall<wire::CallId::LoginContextSpecific>(session, request, reply)
                       : sessionCall<wire::CallId::Login>(session, request, reply);
  wire::wipe(request.pin);
  objectsChanged();  // private objects appear
  if (rv == CKR_OK) {
    std::lock_guard lock(m_mutex);
    m_checked.clear();
  }
  return rv;
}

CK_RV Frontend::logout(CK_SESSION_HANDLE session) {
  wire::Empty reply;
  const CK_RV rv = sessionCall<wire::CallId::Logout>(session, {session}, reply);
  objectsChanged();
  std::lock_guard lock(m_mutex);
  m_checked.clear();  // keys checked while logged in must be checked again
  return rv;
}

CK_RV Frontend::initPin(CK_SESSION_HANDLE session, CK_UTF8CHAR_PTR pin, CK_ULONG pinLength) {
  if ((pin == nullptr && pinLength != 0) || pinLength > wire::kMaxPinBytes) {
    return CKR_ARGUMENTS_BAD;
  }
  wire::InitPinRequest request;
  request.session = session;
  if (pin != nullptr) {
    request.pin.assign(pin, pin + pinLength);
  }
  wire::Empty reply;
  const CK_RV rv = sessionCall<wire::CallId::InitPin>(session, request, reply);
  wire::wipe(request.pin);
  objectsChanged();
  return rv;
}

CK_RV Frontend::setPin(CK_SESSION_HANDLE session, CK_UTF8CHAR_PTR oldPin, CK_ULONG oldLength, CK_UTF8CHAR_PTR newPin,
                       CK_ULONG newLength) {
  if ((oldPin == nullptr && oldLength != 0) || (newPin == nullptr && newLength != 0) ||
      oldLength > wire::kMaxPinBytes || newLength > wire::kMaxPinBytes) {
    return CKR_ARGUMENTS_BAD;
  }
  wire::SetPinRequest request;
  request.session = session;
  if (oldPin != nullptr) {
    request.oldPin.assign(oldPin, oldPin + oldLength);
  }
  if (newPin != nullptr) {
    request.newPin.assign(newPin, newPin + newLength);
  }
  wire::Empty reply;
  const CK_RV rv = sessionCall<wire::CallId::SetPin>(session, request, reply);
  objectsChanged();
  wire::wipe(request.oldPin);
  wire::wipe(request.newPin);
  return rv;
}

}  // namespace dojang::frontend
