#include "drivers/vendor_module/vendor_driver.h"

#include <charconv>
#include <chrono>
#include <utility>

#include "drivers/vendor_module/vendor_token.h"
#include "src/common/cryptoki/padded_text.h"
#include "src/common/cryptoki/two_call_list.h"

namespace dojang::vendor {
namespace {
constexpr std::chrono::milliseconds kEventPollInterval{500};
}  // namespace

CK_SLOT_ID parseSlotKey(const std::string& slotKey) {
  CK_SLOT_ID slot = 0;
  const char* end = slotKey.data() + slotKey.size();
  const auto [next, error] = std::from_chars(slotKey.data(), end, slot);
  if (slotKey.empty() || error != std::errc() || next != end) {
    fail(CKR_SLOT_ID_INVALID, "not a vendor module slot key: \"" + slotKey + "\"");
  }
  return slot;
}

VendorDriver::VendorDriver(const std::string& modulePath, std::string configuredName)
    : m_module(std::make_shared<const VendorModule>(modulePath)), m_configuredName(std::move(configuredName)) {}

VendorDriver::VendorDriver(std::shared_ptr<const VendorModule> module) : m_module(std::move(module)) {
  if (!m_module) {
    fail(CKR_ARGUMENTS_BAD, "VendorDriver needs a module");
  }
}

std::string VendorDriver::name() const {
  if (!m_configuredName.empty()) {
    return m_configuredName;
  }
  const ModuleInfo& info = m_module->info();
  return info.manufacturer + ": " + info.description;
}

std::string VendorDriver::location() const { return m_module->path(); }

std::vector<token::SlotDescription> VendorDriver::slots() {
  const auto getSlotList = [&](CK_SLOT_ID_PTR out, CK_ULONG_PTR count) {
    return m_module->call(&CK_FUNCTION_LIST::C_GetSlotList, CK_BBOOL{CK_FALSE}, out, count);
  };
  std::vector<CK_SLOT_ID> ids;
  checkCkRv(readTwoCallList(ids, getSlotList), "C_GetSlotList");

  std::vector<token::SlotDescription> result;
  result.reserve(ids.size());
  for (CK_SLOT_ID id : ids) {
    CK_SLOT_INFO info{};
    const CK_RV rv = m_module->call(&CK_FUNCTION_LIST::C_GetSlotInfo, id, &info);
    if (rv == CKR_SLOT_ID_INVALID) {
      continue;  // the reader went away since C_GetSlotList
    }
    checkCkRv(rv, "C_GetSlotInfo");
    token::SlotDescription slot;
    slot.key = std::to_string(id);
    slot.description = paddedText(info.slotDescription);
    slot.manufacturer = paddedText(info.manufacturerID);
    slot.flags = info.flags & (CKF_TOKEN_PRESENT | CKF_REMOVABLE_DEVICE | CKF_HW_SLOT);
    slot.hardwareVersion = info.hardwareVersion;
    slot.firmwareVersion = info.firmwareVersion;
    result.push_back(std::move(slot));
  }
  return result;
}

std::unique_ptr<token::Token> VendorDriver::openToken(const std::string& slotKey) {
  const CK_SLOT_ID slot = parseSlotKey(slotKey);
  CK_SLOT_INFO info{};
  m_module->check("C_GetSlotInfo", &CK_FUNCTION_LIST::C_GetSlotInfo, slot, &info);
  if ((info.flags & CKF_TOKEN_PRESENT) == 0) {
    fail(CKR_TOKEN_NOT_PRESENT, "no token in slot " + slotKey + " of " + m_module->path());
  }
  return std::make_unique<VendorToken>(m_module, slot);
}

std::vector<std::pair<CK_SLOT_ID, CK_FLAGS>> VendorDriver::presence() {
  std::vector<std::pair<CK_SLOT_ID, CK_FLAGS>> result;
  for (const token::SlotDescription& slot : slots()) {
    result.emplace_back(parseSlotKey(slot.key), slot.flags & CKF_TOKEN_PRESENT);
  }
  return result;
}

bool VendorDriver::waitForChange() {
  // Many modules (SoftHSM, OpenSC without readers) answer CKF_DONT_BLOCK with CKR_NO_EVENT for
  // ever, even when a slot appears; a changed slot list or token presence counts as an event too.
  const auto before = presence();
  for (;;) {
    if (m_cancelled.load()) {
      return false;
    }
    CK_SLOT_ID slot = 0;
    const CK_RV rv = m_module->call(&CK_FUNCTION_LIST::C_WaitForSlotEvent, CK_FLAGS{CKF_DONT_BLOCK}, &slot,
                                    static_cast<void*>(nullptr));
    if (rv == CKR_OK) {
      return true;
    }
    if (rv == CKR_FUNCTION_NOT_SUPPORTED) {
      return false;
    }
    if (rv != CKR_NO_EVENT) {
      checkCkRv(rv, "C_WaitForSlotEvent");
    }
    if (presence() != before) {
      return true;
    }
    std::unique_lock lock(m_waitMutex);
    m_waitCondition.wait_for(lock, kEventPollInterval, [this] { return m_cancelled.load(); });
  }
}

void VendorDriver::cancelWait() {
  {
    const std::lock_guard lock(m_waitMutex);
    m_cancelled.store(true);
  }
  m_waitCondition.notify_all();
}

}  // namespace dojang::vendor
