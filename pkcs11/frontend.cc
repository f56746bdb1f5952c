#include "pkcs11/frontend.h"

#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "src/common/cryptoki/padded_text.h"
#include "src/common/wire/wire_limits.h"

extern char* program_invocation_short_name;

namespace dojang::frontend {

namespace {

wire::HelloRequest makeHello() {
  wire::HelloRequest hello;
  hello.clientId.resize(16);
  std::size_t filled = 0;
  while (filled < hello.clientId.size()) {
    const ssize_t n = ::getrandom(hello.clientId.data() + filled, hello.clientId.size() - filled, 0);
    if (n > 0) {
      filled += static_cast<std::size_t>(n);
    } else if (errno != EINTR) {
      break;
    }
  }
  hello.pid = static_cast<std::uint32_t>(::getpid());
  hello.program = program_invocation_short_name != nullptr ? program_invocation_short_name : "unknown";
  return hello;
}

constexpr bool isPointerArrayAttribute(CK_ATTRIBUTE_TYPE type) {
  // Nested templates hold pointers and cannot cross a process boundary. CKA_ALLOWED_MECHANISMS
  // is an array too, but of plain numbers.
  return (type & CKF_ARRAY_ATTRIBUTE) != 0 && type != CKA_ALLOWED_MECHANISMS;
}

CK_RV toWireTemplate(const CK_ATTRIBUTE* templ, CK_ULONG count, std::vector<wire::Attribute>& out) {
  if (count > 0 && templ == nullptr) {
    return CKR_ARGUMENTS_BAD;
  }
  if (count > wire::kMaxTemplateAttributes) {
    return CKR_TEMPLATE_INCONSISTENT;
  }
  out.clear();
  out.reserve(count);
  for (CK_ULONG i = 0; i < count; ++i) {
    const auto& attribute = templ[i];
    if (isPointerArrayAttribute(attribute.type)) {
      return CKR_ATTRIBUTE_TYPE_INVALID;
    }
    // A type given twice leaves the daemon and the token free to read different values.
    for (CK_ULONG j = 0; j < i; ++j) {
      if (templ[j].type == attribute.type) {
        return CKR_TEMPLATE_INCONSISTENT;
      }
    }
    if (attribute.ulValueLen > wire::kMaxDataBytes ||
        (attribute.pValue == nullptr && attribute.ulValueLen != 0)) {
      return CKR_ATTRIBUTE_VALUE_INVALID;
    }
    const auto* bytes = static_cast<const std::uint8_t*>(attribute.pValue);
    out.push_back({attribute.type, wire::Bytes(bytes, bytes + attribute.ulValueLen)});
  }
  return CKR_OK;
}

void wipeTemplate(std::vector<wire::Attribute>& templ) {
  for (auto& attribute : templ) {
    wire::wipe(attribute.value);
  }
}

bool isPssMechanism(CK_MECHANISM_TYPE type) {
  switch (type) {
    case CKM_RSA_PKCS_PSS:
    case CKM_SHA1_RSA_PKCS_PSS:
    case CKM_SHA224_RSA_PKCS_PSS:
    case CKM_SHA256_RSA_PKCS_PSS:
    case CKM_SHA384_RSA_PKCS_PSS:
    case CKM_SHA512_RSA_PKCS_PSS:
      return true;
    default:
      return false;
  }
}

// A list result with the two-call convention: a NULL array asks for the count, a short one gets
// CKR_BUFFER_TOO_SMALL with the count needed.
template <class Item, class Convert, class Out>
CK_RV copyOut(const std::vector<Item>& items, Convert convert, Out* out, CK_ULONG_PTR count) {
  if (out != nullptr) {
    if (*count < items.size()) {
      *count = items.size();
      return CKR_BUFFER_TOO_SMALL;
    }
    std::transform(items.begin(), items.end(), out, convert);
  }
  *count = items.size();
  return CKR_OK;
}

// Copies a result out with the two-call convention: a NULL buffer asks for the size, a small
// buffer gets CKR_BUFFER_TOO_SMALL; both keep the result for the next call.
CK_RV deliver(const wire::Bytes& result, CK_BYTE_PTR out, CK_ULONG_PTR outLength, bool& done) {
  done = false;
  if (out == nullptr) {
    *outLength = result.size();
    return CKR_OK;
  }
  if (*outLength < result.size()) {
    *outLength = result.size();
    return CKR_BUFFER_TOO_SMALL;
  }
  std::memcpy(out, result.data(), result.size());
  *outLength = result.size();
  done = true;
  return CKR_OK;
}

}  // namespace

bool toWireMechanism(const CK_MECHANISM& in, wire::Mechanism& out) {
  out = {};
  out.type = in.mechanism;
  if (in.pParameter == nullptr || in.ulParameterLen == 0) {
    return in.ulParameterLen == 0;
  }
  if (isPssMechanism(in.mechanism)) {
    if (in.ulParameterLen != sizeof(CK_RSA_PKCS_PSS_PARAMS)) {
      return false;
    }
    const auto* pss = static_cast<const CK_RSA_PKCS_PSS_PARAMS*>(in.pParameter);
    out.paramsKind = wire::MechanismParams::Pss;
    out.hashAlg = pss->hashAlg;
    out.mgf = pss->mgf;
    out.saltOrSource = pss->sLen;
    return true;
  }
  if (in.mechanism == CKM_RSA_PKCS_OAEP) {
    if (in.ulParameterLen != sizeof(CK_RSA_PKCS_OAEP_PARAMS)) {
      return false;
    }
    const auto* oaep = static_cast<const CK_RSA_PKCS_OAEP_PARAMS*>(in.pParameter);
    out.paramsKind = wire::MechanismParams::Oaep;
    out.hashAlg = oaep->hashAlg;
    out.mgf = oaep->mgf;
    out.saltOrSource = oaep->source;
    if (oaep->ulSourceDataLen > 0) {
      if (oaep->pSourceData == nullptr || oaep->ulSourceDataLen > wire::kMaxStringBytes) {
        return false;
      }
      const auto* bytes = static_cast<const std::uint8_t*>(oaep->pSourceData);
      out.data.assign(bytes, bytes + oaep->ulSourceDataLen);
    }
    return true;
  }
  if (in.ulParameterLen > wire::kMaxStringBytes) {
    return false;
  }
  const auto* bytes = static_cast<const std::uint8_t*>(in.pParameter);
  out.paramsKind = wire::MechanismParams::Raw;
  out.data.assign(bytes, bytes + in.ulParameterLen);
  return true;
}

void Frontend::Operation::end() noexcept {
  active = false;
  updated = false;
  haveResult = false;
  resultIsSinglePart = false;
  wire::wipe(data);
  data.clear();
  wire::wipe(result);
  result.clear();
}

Frontend::Frontend(Connector connector, std::chrono::milliseconds timeout)
    : m_pool(std::move(connector), makeHello(), timeout) {
  m_pool.setRestartHandler([this] { forgetEverything(); });
}

void Frontend::forgetEverything() {
  // A new daemon: every session, login and checked key of the old one is gone.
  objectsChanged();
  std::lock_guard lock(m_mutex);
  m_sessions.clear();
  m_mechanisms.clear();
  m_checked.clear();
}

CK_RV Frontend::connect() {
  wire::GetSlotListReply ignored;
  return call<wire::CallId::GetSlotList>({false}, ignored);
}

void Frontend::finalize() noexcept {
  m_finalized = true;
  m_pool.shutdownAll();
}

template <wire::CallId id>
CK_RV Frontend::call(const typename wire::Call<id>::Request& request, typename wire::Call<id>::Reply& reply) {
  try {
    const CK_RV rv = m_pool.template call<id>(request, reply, true);
    return m_finalized ? CKR_CRYPTOKI_NOT_INITIALIZED : rv;
  } catch (const DaemonUnreachable&) {
    return m_finalized ? CKR_CRYPTOKI_NOT_INITIALIZED : CKR_DEVICE_ERROR;
  }
}

// A session-bound call fails locally for handles the current daemon never gave out, before the
// round trip (a handle from before a daemon restart may name someone else's session) and after
// it (the daemon may have restarted during the call).
template <wire::CallId id>
CK_RV Frontend::sessionCall(CK_SESSION_HANDLE session, const typename wire::Call<id>::Request& request,
                            typename wire::Call<id>::Reply& reply) {
  if (!sessionState(session)) {
    return CKR_SESSION_HANDLE_INVALID;
  }
  const CK_RV rv = call<id>(request, reply);
  if (rv == CKR_DEVICE_ERROR || rv == CKR_SESSION_HANDLE_INVALID) {
    std::lock_guard lock(m_mutex);
    if (!m_sessions.contains(session)) {
      return CKR_SESSION_HANDLE_INVALID;  // the daemon restarted underneath this session
    }
    if (rv == CKR_SESSION_HANDLE_INVALID) {
      m_sessions.erase(session);
    }
  }
  return rv;
}

// Closing the last session with a token logs the client out of it (PKCS#11 5.6), so keys the
// daemon approved for that slot must be checked again.
void Frontend::forgetChecksIfLoggedOutLocked(CK_SLOT_ID slot) {
  const bool sessionsLeft = std::any_of(m_sessions.begin(), m_sessions.end(),
                                        [slot](const auto& item) { return item.second->slot == slot; });
  if (!sessionsLeft) {
    std::erase_if(m_checked, [slot](const CheckedUse& use) { return std::get<0>(use) == slot; });
  }
}

std::shared_ptr<Frontend::SessionState> Frontend::findSession(CK_SESSION_HANDLE session) {
  std::lock_guard lock(m_mutex);
  auto it = m_sessions.find(session);
  return it == m_sessions.end() ? nullptr : it->second;
}

std::shared_ptr<Frontend::SessionState> Frontend::sessionState(CK_SESSION_HANDLE session) {
  auto state = findSession(session);
  if (state) {
    std::lock_guard keptLock(state->keptMutex);
    state->kept.valid = false;
  }
  return state;
}

CK_RV Frontend::refuseOnSession(CK_SESSION_HANDLE session, CK_RV rv) {
  return sessionState(session) ? rv : CKR_SESSION_HANDLE_INVALID;
}

CK_RV Frontend::lookupMechanism(CK_SLOT_ID slot, CK_MECHANISM_TYPE type, wire::MechanismInfo& out) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    {
      std::lock_guard lock(m_mutex);
      if (auto it = m_mechanisms.find(slot); it != m_mechanisms.end()) {
        for (const auto& entry : it->second) {
          if (entry.type == type) {
            out = entry;
            return CKR_OK;
          }
        }
        return CKR_MECHANISM_INVALID;
      }
    }
    CK_ULONG count = 0;
    if (CK_RV rv = getMechanismList(slot, nullptr, &count); rv != CKR_OK) {  // fills the cache
      return rv;
    }
  }
  return CKR_MECHANISM_INVALID;
}

// ---- slots and tokens ----

CK_RV Frontend::getSlotList(CK_BBOOL tokenPresent, CK_SLOT_ID_PTR slots, CK_ULONG_PTR count) {
  if (count == nullptr) {
    return CKR_ARGUMENTS_BAD;
  }
  wire::GetSlotListReply reply;
  if (CK_RV rv = call<wire::CallId::GetSlotList>({tokenPresent != CK_FALSE}, reply); rv != CKR_OK) {
    return rv;
  }
  return copyOut(reply.slots, [](std::uint64_t slot) { return CK_SLOT_ID{slot}; }, slots, count);
}

CK_RV Frontend::getSlotInfo(CK_SLOT_ID slot, CK_SLOT_INFO_PTR info) {
  if (info == nullptr) {
    return CKR_ARGUMENTS_BAD;
  }
  wire::GetSlotInfoReply reply;
  if (CK_RV rv = call<wire::CallId::GetSlotInfo>({slot}, reply); rv != CKR_OK) {
    return rv;
  }
  padText(info->slotDescription, reply.info.description);
  padText(info->manufacturerID, reply.info.manufacturer);
  info->flags = reply.info.flags;
  info->hardwareVersion = {reply.info.hardwareVersion.major, reply.info.hardwareVersion.minor};
  info->firmwareVersion = {reply.info.firmwareVersion.major, reply.info.firmwareVersion.minor};
  if ((info->flags & CKF_TOKEN_PRESENT) == 0) {
    std::lock_guard lock(m_mutex);
    m_mechanisms.erase(slot);  // the next token may offer other mechanisms
  }
  return CKR_OK;
}

CK_RV Frontend::getTokenInfo(CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info) {
  if (info == nullptr) {
    return CKR_ARGUMENTS_BAD;
  }
  wire::GetTokenInfoReply reply;
  if (CK_RV rv = call<wire::CallId::GetTokenInfo>({slot}, reply); rv != CKR_OK) {
    return rv;
  }
  const auto& in = reply.info;
  padText(info->label, in.label);
  padText(info->manufacturerID, in.manufacturer);
  padText(info->model, in.model);
  padText(info->serialNumber, in.serialNumber);
  info->flags = in.flags;
  info->ulMaxSessionCount = in.maxSessionCount;
  info->ulSessionCount = in.sessionCount;
  info->ulMaxRwSessionCount = in.maxRwSessionCount;
  info->ulRwSessionCount = in.rwSessionCount;
  info->ulMaxPinLen = in.maxPinLen;
  info->ulMinPinLen = in.minPinLen;
  info->ulTotalPublicMemory = in.totalPublicMemory;
  info->ulFreePublicMemory = in.freePublicMemory;
  info->ulTotalPrivateMemory = in.totalPrivateMemory;
  info->ulFreePrivateMemory = in.freePrivateMemory;
  info->hardwareVersion = {in.hardwareVersion.major, in.hardwareVersion.minor};
  info->firmwareVersion = {in.firmwareVersion.major, in.firmwareVersion.minor};
  padText(info->utcTime, in.utcTime);
  return CKR_OK;
}

CK_RV Frontend::getMechanismList(CK_SLOT_ID slot, CK_MECHANISM_TYPE_PTR list, CK_ULONG_PTR count) {
  if (count == nullptr) {
    return CKR_ARGUMENTS_BAD;
  }
  wire::GetMechanismListReply reply;
  if (CK_RV rv = call<wire::CallId::GetMechanismList>({slot}, reply); rv != CKR_OK) {
    return rv;
  }
  const CK_RV rv = copyOut(reply.mechanisms, [](const wire::MechanismInfo& m) { return CK_MECHANISM_TYPE{m.type}; },
                           list, count);
  std::lock_guard lock(m_mutex);
  m_mechanisms[slot] = std::move(reply.mechanisms);
  return rv;
}

CK_RV Frontend::getMechanismInfo(CK_SLOT_ID slot, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR info) {
  if (info == nullptr) {
    return CKR_ARGUMENTS_BAD;
  }
  wire::MechanismInfo entry;
  if (CK_RV rv = lookupMechanism(slot, type, entry); rv != CKR_OK) {
    return rv;
  }
  info->ulMinKeySize = entry.minKeySize;
  info->ulMaxKeySize = entry.maxKeySize;
  info->flags = entry.flags;
  return CKR_OK;
}

CK_RV Frontend::waitForSlotEvent(CK_FLAGS flags, CK_SLOT_ID_PTR slot) {
  if (slot == nullptr) {
    return CKR_ARGUMENTS_BAD;
  }
  wire::WaitForSlotEventReply reply;
  const CK_RV rv = call<wire::CallId::WaitForSlotEvent>({(flags & CKF_DONT_BLOCK) != 0}, reply);
  if (rv == CKR_OK) {
    *slot = reply.slot;
    std::lock_guard lock(m_mutex);
    m_mechanisms.erase(reply.slot);
  }
  return rv;
}

// ---- sessions and login ----

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

// ---- objects ----

CK_RV Frontend::findObjectsInit(CK_SESSION_HANDLE session, CK_ATTRIBUTE_PTR templ, CK_ULONG count) {
  auto state = sessionState(session);
  if (!state) {
    return CKR_SESSION_HANDLE_INVALID;
  }
  wire::FindObjectsRequest request;
  request.session = session;
  if (CK_RV rv = toWireTemplate(templ, count, request.templ); rv != CKR_OK) {
    return rv;
  }
  std::lock_guard sessionLock(state->mutex);
  if (state->findActive) {
    return CKR_OPERATION_ACTIVE;
  }
  wire::FindObjectsReply reply;
  if (CK_RV rv = sessionCall<wire::CallId::FindObjects>(session, request, reply); rv != CKR_OK) {
    return rv;
  }
  state->findActive = true;
  state->found = std::move(reply.objects);
  state->nextFound = 0;
  return CKR_OK;
}

CK_RV Frontend::findObjects(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE_PTR objects, CK_ULONG max,
                            CK_ULONG_PTR count) {
  if (count == nullptr || (objects == nullptr && max > 0)) {
    return CKR_ARGUMENTS_BAD;
  }
  auto state = sessionState(session);
  if (!state) {
    return CKR_SESSION_HANDLE_INVALID;
  }
  std::lock_guard sessionLock(state->mutex);
  if (!state->findActive) {
    return CKR_OPERATION_NOT_INITIALIZED;
  }
  CK_ULONG returned = 0;
  while (returned < max && state->nextFound < state->found.size()) {
    objects[returned++] = state->found[state->nextFound++];
  }
  *count = returned;
  return CKR_OK;
}

CK_RV Frontend::findObjectsFinal(CK_SESSION_HANDLE session) {
  auto state = sessionState(session);
  if (!state) {
    return CKR_SESSION_HANDLE_INVALID;
  }
  std::lock_guard sessionLock(state->mutex);
  if (!state->findActive) {
    return CKR_OPERATION_NOT_INITIALIZED;
  }
  state->findActive = false;
  state->found.clear();
  return CKR_OK;
}

CK_RV Frontend::getAttributeValue(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object, CK_ATTRIBUTE_PTR templ,
                                  CK_ULONG count) {
  if (templ == nullptr && count > 0) {
    return CKR_ARGUMENTS_BAD;
  }
  if (count > wire::kMaxTemplateAttributes) {
    return CKR_ARGUMENTS_BAD;
  }
  auto state = findSession(session);
  if (!state) {
    return CKR_SESSION_HANDLE_INVALID;
  }
  wire::GetAttributeValueRequest request;
  request.session = session;
  request.object = object;
  request.types.reserve(count);
  bool sizeQuery = false;
  for (CK_ULONG i = 0; i < count; ++i) {
    request.types.push_back(templ[i].type);
    sizeQuery = sizeQuery || templ[i].pValue == nullptr;
  }
  // Taken before the round trip: a write that overlaps it makes the kept reply stale.
  const std::uint64_t generation = m_generation;
  wire::GetAttributeValueReply reply;
  bool served = false;
  {
    std::lock_guard keptLock(state->keptMutex);
    auto& kept = state->kept;
    if (kept.valid && kept.generation == generation && kept.object == object && kept.types == request.types) {
      reply.attributes = std::move(kept.attributes);
      served = true;
    }
    kept.valid = false;
  }
  if (!served) {
    if (CK_RV rv = sessionCall<wire::CallId::GetAttributeValue>(session, request, reply); rv != CKR_OK) {
      return rv;
    }
    if (reply.attributes.size() != count) {
      return CKR_DEVICE_ERROR;
    }
  }
  // PKCS#11 2.40 section 5.7: every attribute is processed; the call reports one of the failures.
  CK_RV result = CKR_OK;
  for (CK_ULONG i = 0; i < count; ++i) {
    auto& attribute = templ[i];
    const auto& read = reply.attributes[i];
    if (read.status != CKR_OK) {
      attribute.ulValueLen = CK_UNAVAILABLE_INFORMATION;
      result = static_cast<CK_RV>(read.status);
    } else if (attribute.pValue == nullptr) {
      attribute.ulValueLen = read.value.size();
    } else if (attribute.ulValueLen < read.value.size()) {
      attribute.ulValueLen = CK_UNAVAILABLE_INFORMATION;
      result = CKR_BUFFER_TOO_SMALL;
    } else {
      std::memcpy(attribute.pValue, read.value.data(), read.value.size());
      attribute.ulValueLen = read.value.size();
    }
  }
  if (sizeQuery || result == CKR_BUFFER_TOO_SMALL) {
    std::lock_guard keptLock(state->keptMutex);
    state->kept = {true, object, std::move(request.types), std::move(reply.attributes), generation};
  }
  return result;
}

CK_RV Frontend::setAttributeValue(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object, CK_ATTRIBUTE_PTR templ,
                                  CK_ULONG count) {
  wire::SetAttributeValueRequest request;
  request.session = session;
  request.object = object;
  if (CK_RV rv = toWireTemplate(templ, count, request.templ); rv != CKR_OK) {
    return rv;
  }
  wire::Empty reply;
  const CK_RV rv = sessionCall<wire::CallId::SetAttributeValue>(session, request, reply);
  objectsChanged();
  return rv;
}

CK_RV Frontend::createObject(CK_SESSION_HANDLE session, CK_ATTRIBUTE_PTR templ, CK_ULONG count,
                             CK_OBJECT_HANDLE_PTR object) {
  if (object == nullptr) {
    return CKR_ARGUMENTS_BAD;
  }
  wire::CreateObjectRequest request;
  request.session = session;
  CK_RV rv = toWireTemplate(templ, count, request.templ);
  if (rv == CKR_OK) {
    wire::ObjectReply reply;
    rv = sessionCall<wire::CallId::CreateObject>(session, request, reply);
    objectsChanged();
    *object = reply.object;
  }
  wipeTemplate(request.templ);  // an imported key's bytes leave no copy here
  return rv;
}

CK_RV Frontend::destroyObject(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object) {
  wire::Empty reply;
  const CK_RV rv = sessionCall<wire::CallId::DestroyObject>(session, {session, object}, reply);
  objectsChanged();
  std::lock_guard lock(m_mutex);
  std::erase_if(m_checked, [object](const auto& entry) { return std::get<1>(entry) == object; });
  return rv;
}

CK_RV Frontend::copyObject(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object, CK_ATTRIBUTE_PTR templ,
                           CK_ULONG count, CK_OBJECT_HANDLE_PTR newObject) {
  if (newObject == nullptr) {
    return CKR_ARGUMENTS_BAD;
  }
  wire::CopyObjectRequest request;
  request.session = session;
  request.object = object;
  CK_RV rv = toWireTemplate(templ, count, request.templ);
  if (rv == CKR_OK) {
    wire::ObjectReply reply;
    rv = sessionCall<wire::CallId::CopyObject>(session, request, reply);
    objectsChanged();  // a kept attribute reply may no longer be what a read would see
    if (rv == CKR_OK) {
      *newObject = reply.object;
    }
  }
  wipeTemplate(request.templ);
  return rv;
}

CK_RV Frontend::getObjectSize(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object, CK_ULONG_PTR size) {
  if (size == nullptr) {
    return CKR_ARGUMENTS_BAD;
  }
  wire::ObjectSizeReply reply;
  const CK_RV rv = sessionCall<wire::CallId::GetObjectSize>(session, {session, object}, reply);
  if (rv == CKR_OK) {
    *size = static_cast<CK_ULONG>(reply.size);
  }
  return rv;
}

CK_RV Frontend::generateKeyPair(CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism,
                                CK_ATTRIBUTE_PTR publicTemplate, CK_ULONG publicCount,
                                CK_ATTRIBUTE_PTR privateTemplate, CK_ULONG privateCount,
                                CK_OBJECT_HANDLE_PTR publicKey, CK_OBJECT_HANDLE_PTR privateKey) {
  if (mechanism == nullptr || publicKey == nullptr || privateKey == nullptr) {
    return CKR_ARGUMENTS_BAD;
  }
  wire::GenerateKeyPairRequest request;
  request.session = session;
  if (!toWireMechanism(*mechanism, request.mechanism)) {
    return CKR_MECHANISM_PARAM_INVALID;
  }
  if (CK_RV rv = toWireTemplate(publicTemplate, publicCount, request.publicTemplate); rv != CKR_OK) {
    return rv;
  }
  if (CK_RV rv = toWireTemplate(privateTemplate, privateCount, request.privateTemplate); rv != CKR_OK) {
    return rv;
  }
  wire::GenerateKeyPairReply reply;
  const CK_RV rv = sessionCall<wire::CallId::GenerateKeyPair>(session, request, reply);
  objectsChanged();
  if (rv != CKR_OK) {
    return rv;
  }
  *publicKey = reply.publicKey;
  *privateKey = reply.privateKey;
  return CKR_OK;
}

// ---- sign, verify, decrypt, digest ----

CK_RV Frontend::operationInit(Kind kind, CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism, CK_OBJECT_HANDLE key) {
  if (mechanism == nullptr) {
    return CKR_ARGUMENTS_BAD;
  }
  auto state = sessionState(session);
  if (!state) {
    return CKR_SESSION_HANDLE_INVALID;
  }
  std::lock_guard sessionLock(state->mutex);
  auto& operation = state->operations[operationIndex(kind)];
  if (operation.active) {
    return CKR_OPERATION_ACTIVE;
  }
  wire::Mechanism wireMechanism;
  if (!toWireMechanism(*mechanism, wireMechanism)) {
    return CKR_MECHANISM_PARAM_INVALID;
  }
  if (wireMechanism.paramsKind == wire::MechanismParams::Oaep && !wireMechanism.data.empty()) {
    return CKR_MECHANISM_PARAM_INVALID;  // OAEP labels: see policy.h
  }
  // The mechanism is checked here, from the cached list, without a round trip.
  wire::MechanismInfo offered;
  CK_RV rv = lookupMechanism(state->slot, mechanism->mechanism, offered);
  if (rv != CKR_OK) {
    return rv;
  }
  if ((offered.flags & mechanismFlag(kind)) == 0) {
    return CKR_MECHANISM_INVALID;
  }
  if (kind != Kind::Digest) {
    // The key is checked by the daemon once; after that the pair is known good.
    const CheckedUse checkKey{state->slot,           std::uint64_t{key},        mechanism->mechanism,
                              wireMechanism.hashAlg, wireMechanism.mgf, wireMechanism.saltOrSource,
                              kind};
    bool known = false;
    {
      std::lock_guard lock(m_mutex);
      known = m_checked.contains(checkKey);
    }
    if (!known) {
      wire::CheckOperationRequest request;
      request.session = session;
      request.operation = kind;
      request.mechanism = wireMechanism;
      request.key = key;
      wire::Empty reply;
      if (rv = sessionCall<wire::CallId::CheckOperation>(session, request, reply); rv != CKR_OK) {
        return rv;
      }
      std::lock_guard lock(m_mutex);
      m_checked.insert(checkKey);
    }
  }
  operation.end();
  operation.active = true;
  operation.mechanism = std::move(wireMechanism);
  operation.key = key;
  return CKR_OK;
}

CK_RV Frontend::operationUpdate(Kind kind, CK_SESSION_HANDLE session, CK_BYTE_PTR data, CK_ULONG length) {
  if (data == nullptr && length > 0) {
    return CKR_ARGUMENTS_BAD;
  }
  auto state = sessionState(session);
  if (!state) {
    return CKR_SESSION_HANDLE_INVALID;
  }
  std::lock_guard sessionLock(state->mutex);
  auto& operation = state->operations[operationIndex(kind)];
  if (!operation.active) {
    return CKR_OPERATION_NOT_INITIALIZED;
  }
  if (operation.haveResult) {
    // A size query has put the operation into its last step: no more input.
    operation.end();
    return CKR_OPERATION_ACTIVE;
  }
  if (operation.data.size() + length > wire::kMaxDataBytes) {
    operation.end();
    return CKR_DATA_LEN_RANGE;
  }
  operation.updated = true;
  operation.data.insert(operation.data.end(), data, data + length);
  return CKR_OK;
}

CK_RV Frontend::operationFinish(Kind kind, CK_SESSION_HANDLE session, CK_BYTE_PTR data, CK_ULONG length,
                                bool singlePart, CK_BYTE_PTR out, CK_ULONG_PTR outLength) {
  auto state = sessionState(session);
  if (!state) {
    return CKR_SESSION_HANDLE_INVALID;
  }
  std::lock_guard sessionLock(state->mutex);
  auto& operation = state->operations[operationIndex(kind)];
  if (!operation.active) {
    return CKR_OPERATION_NOT_INITIALIZED;
  }
  const bool verifying = kind == Kind::Verify;
  if (outLength == nullptr || (data == nullptr && length > 0) || (verifying && out == nullptr)) {
    operation.end();
    return CKR_ARGUMENTS_BAD;
  }
  if (operation.haveResult && operation.resultIsSinglePart != singlePart) {
    // C_DigestFinal after a C_Digest size query (or the reverse): the operation is in the
    // other mode. Like any failed call, this ends it.
    operation.end();
    return CKR_OPERATION_ACTIVE;
  }
  if (singlePart) {
    if (operation.updated) {
      operation.end();
      return CKR_OPERATION_ACTIVE;
    }
    if (!operation.haveResult) {
      if (length > wire::kMaxDataBytes) {
        operation.end();
        return CKR_DATA_LEN_RANGE;
      }
      operation.data.assign(data, data + length);
    }
  }
  if (verifying) {
    wire::VerifyRequest request;
    request.session = session;
    request.mechanism = operation.mechanism;
    request.key = operation.key;
    request.data = std::move(operation.data);
    request.signature.assign(out, out + *outLength);
    wire::Empty reply;
    const CK_RV rv = sessionCall<wire::CallId::Verify>(session, request, reply);
    operation.end();
    return rv;
  }
  if (!operation.haveResult) {
    wire::DataReply reply;
    CK_RV rv = CKR_OK;
    if (kind == Kind::Digest) {
      rv = sessionCall<wire::CallId::Digest>(session, {session, operation.mechanism, operation.data}, reply);
    } else {
      wire::KeyOperationRequest request{session, operation.mechanism, operation.key, std::move(operation.data)};
      rv = kind == Kind::Sign ? sessionCall<wire::CallId::Sign>(session, request, reply)
                              : sessionCall<wire::CallId::Decrypt>(session, request, reply);
      wire::wipe(request.data);
    }
    if (rv != CKR_OK) {
      operation.end();
      return rv;
    }
    operation.result = std::move(reply.data);
    operation.haveResult = true;
    operation.resultIsSinglePart = singlePart;
  }
  bool done = false;
  const CK_RV rv = deliver(operation.result, out, outLength, done);
  if (done) {
    operation.end();
  }
  return rv;
}

CK_RV Frontend::generateRandom(CK_SESSION_HANDLE session, CK_BYTE_PTR out, CK_ULONG length) {
  if (out == nullptr && length > 0) {
    return CKR_ARGUMENTS_BAD;
  }
  if (length > wire::kMaxRandomBytes) {
    return CKR_ARGUMENTS_BAD;
  }
  wire::DataReply reply;
  if (CK_RV rv = sessionCall<wire::CallId::GenerateRandom>(
          session, {session, static_cast<std::uint32_t>(length)}, reply);
      rv != CKR_OK) {
    return rv;
  }
  if (reply.data.size() != length) {
    return CKR_DEVICE_ERROR;
  }
  std::memcpy(out, reply.data.data(), length);
  return CKR_OK;
}

}  // namespace dojang::frontend
