// A token::Driver for one vendor PKCS#11 module: its slots are the module's slots, keyed by the
// decimal backend slot ID.
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "drivers/token/token.h"
#include "drivers/vendor_module/vendor_module.h"

namespace dojang::vendor {

class VendorDriver final : public token::Driver {
 public:
  // Loads the module (see VendorModule for what is refused). configuredName is the backend's
  // name in dojangd.toml; without one the module's own description names the driver.
  explicit VendorDriver(const std::string& modulePath, std::string configuredName = {});
  explicit VendorDriver(std::shared_ptr<const VendorModule> module);

  // The configured name, or "<manufacturer>: <library description>" from C_GetInfo.
  [[nodiscard]] std::string name() const override;
  // The module path as configured.
  [[nodiscard]] std::string location() const override;
  std::vector<token::SlotDescription> slots() override;
  std::unique_ptr<token::Token> openToken(const std::string& slotKey) override;
  // Polls C_WaitForSlotEvent(CKF_DONT_BLOCK) and the slot list every 500 ms: true on an event or
  // when a slot or token came or went; false when the module answers CKR_FUNCTION_NOT_SUPPORTED
  // or after cancelWait(). (A blocking C_WaitForSlotEvent could only be interrupted by
  // C_Finalize, which would end every session.)
  bool waitForChange() override;
  // Makes current and all later waitForChange() calls return false (the driver is stopping).
  void cancelWait() override;

  [[nodiscard]] const VendorModule& module() const noexcept { return *m_module; }

 private:
  // Slot IDs with their CKF_TOKEN_PRESENT bit.
  std::vector<std::pair<CK_SLOT_ID, CK_FLAGS>> presence();

  std::shared_ptr<const VendorModule> m_module;
  std::string m_configuredName;
  std::mutex m_waitMutex;
  std::condition_variable m_waitCondition;
  std::atomic<bool> m_cancelled{false};
};

// Parses a slot key ("17") back into the backend slot ID; throws Error(CKR_SLOT_ID_INVALID).
[[nodiscard]] CK_SLOT_ID parseSlotKey(const std::string& slotKey);

}  // namespace dojang::vendor
