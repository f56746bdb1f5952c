// Frontend's slot and token functions: C_GetSlotList to C_WaitForSlotEvent.
#include "pkcs11/frontend.h"

#include <mutex>

#include "pkcs11/frontend_calls.h"
#include "pkcs11/marshalling.h"
#include "src/common/cryptoki/padded_text.h"

namespace dojang::frontend {

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

}  // namespace dojang::frontend
