// RAII owners for the module's own resources: a backend session (C_OpenSession/C_CloseSession)
// and a find operation (C_FindObjectsInit/C_FindObjectsFinal). Both are move-only.
#pragma once

#include <memory>
#include <vector>

#include "drivers/vendor_module/attribute_template.h"
#include "drivers/vendor_module/vendor_module.h"
#include "src/common/cryptoki/cryptoki.h"

namespace dojang::vendor {

class BackendSession final {
 public:
  // Opens a read-write serial session; on a write-protected token, a read-only one.
  BackendSession(std::shared_ptr<const VendorModule> module, CK_SLOT_ID slot);
  ~BackendSession();
  BackendSession(const BackendSession&) = delete;
  BackendSession& operator=(const BackendSession&) = delete;
  BackendSession(BackendSession&& other) noexcept;
  BackendSession& operator=(BackendSession&& other) noexcept;

  [[nodiscard]] CK_SESSION_HANDLE handle() const noexcept { return m_handle; }
  [[nodiscard]] CK_SLOT_ID slot() const noexcept { return m_slot; }
  [[nodiscard]] bool readWrite() const noexcept { return m_readWrite; }
  [[nodiscard]] const VendorModule& module() const noexcept { return *m_module; }
  [[nodiscard]] const std::shared_ptr<const VendorModule>& sharedModule() const noexcept {
    return m_module;
  }

 private:
  void close() noexcept;

  std::shared_ptr<const VendorModule> m_module;
  CK_SLOT_ID m_slot = 0;
  CK_SESSION_HANDLE m_handle = CK_INVALID_HANDLE;
  bool m_open = false;
  bool m_readWrite = false;
};

class FindOperation final {
 public:
  // C_FindObjectsInit; at most one find operation per session may be active.
  FindOperation(const BackendSession& session, Template& templ);
  ~FindOperation();
  FindOperation(const FindOperation&) = delete;
  FindOperation& operator=(const FindOperation&) = delete;
  FindOperation(FindOperation&& other) noexcept;
  FindOperation& operator=(FindOperation&& other) noexcept;

  // Up to `batch` more handles; empty when the search is exhausted.
  std::vector<CK_OBJECT_HANDLE> next(std::size_t batch);
  // Every remaining handle.
  std::vector<CK_OBJECT_HANDLE> all(std::size_t batch = 64);

 private:
  void finish() noexcept;

  const BackendSession* m_session = nullptr;
  bool m_active = false;
};

}  // namespace dojang::vendor
