#include "drivers/vendor_module/backend_session.h"

#include <algorithm>
#include <utility>

namespace dojang::vendor {

BackendSession::BackendSession(std::shared_ptr<const VendorModule> module, CK_SLOT_ID slot)
    : m_module(std::move(module)), m_slot(slot) {
  CK_RV rv = m_module->call(&CK_FUNCTION_LIST::C_OpenSession, slot, CKF_SERIAL_SESSION | CKF_RW_SESSION,
                            static_cast<void*>(nullptr), CK_NOTIFY{nullptr}, &m_handle);
  m_readWrite = rv == CKR_OK;
  if (rv == CKR_TOKEN_WRITE_PROTECTED) {
    rv = m_module->call(&CK_FUNCTION_LIST::C_OpenSession, slot, CK_FLAGS{CKF_SERIAL_SESSION},
                        static_cast<void*>(nullptr), CK_NOTIFY{nullptr}, &m_handle);
  }
  checkCkRv(rv, "C_OpenSession");
  m_open = true;
}

BackendSession::~BackendSession() { close(); }

BackendSession::BackendSession(BackendSession&& other) noexcept
    : m_module(std::move(other.m_module)),
      m_slot(other.m_slot),
      m_handle(std::exchange(other.m_handle, CK_INVALID_HANDLE)),
      m_open(std::exchange(other.m_open, false)),
      m_readWrite(other.m_readWrite) {}

BackendSession& BackendSession::operator=(BackendSession&& other) noexcept {
  if (this != &other) {
    close();
    m_module = std::move(other.m_module);
    m_slot = other.m_slot;
    m_handle = std::exchange(other.m_handle, CK_INVALID_HANDLE);
    m_open = std::exchange(other.m_open, false);
    m_readWrite = other.m_readWrite;
  }
  return *this;
}

void BackendSession::close() noexcept {
  if (m_open && m_module) {
    // Fails harmlessly when the token is gone and the module already closed the session.
    m_module->call(&CK_FUNCTION_LIST::C_CloseSession, m_handle);
  }
  m_open = false;
}

FindOperation::FindOperation(const BackendSession& session, Template& templ) : m_session(&session) {
  session.module().check("C_FindObjectsInit", &CK_FUNCTION_LIST::C_FindObjectsInit, session.handle(),
                         templ.data(), templ.size());
  m_active = true;
}

FindOperation::~FindOperation() { finish(); }

FindOperation::FindOperation(FindOperation&& other) noexcept
    : m_session(other.m_session), m_active(std::exchange(other.m_active, false)) {}

FindOperation& FindOperation::operator=(FindOperation&& other) noexcept {
  if (this != &other) {
    finish();
    m_session = other.m_session;
    m_active = std::exchange(other.m_active, false);
  }
  return *this;
}

std::vector<CK_OBJECT_HANDLE> FindOperation::next(std::size_t batch) {
  std::vector<CK_OBJECT_HANDLE> found(batch == 0 ? 1 : batch);
  CK_ULONG count = 0;
  m_session->module().check("C_FindObjects", &CK_FUNCTION_LIST::C_FindObjects, m_session->handle(),
                            found.data(), static_cast<CK_ULONG>(found.size()), &count);
  found.resize(std::min<std::size_t>(count, found.size()));
  return found;
}

std::vector<CK_OBJECT_HANDLE> FindOperation::all(std::size_t batch) {
  std::vector<CK_OBJECT_HANDLE> result;
  for (;;) {
    std::vector<CK_OBJECT_HANDLE> more = next(batch);
    if (more.empty()) {
      return result;
    }
    result.insert(result.end(), more.begin(), more.end());
  }
}

void FindOperation::finish() noexcept {
  if (m_active && m_session != nullptr) {
    m_session->module().call(&CK_FUNCTION_LIST::C_FindObjectsFinal, m_session->handle());
  }
  m_active = false;
}

}  // namespace dojang::vendor
