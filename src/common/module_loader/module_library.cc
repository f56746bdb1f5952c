#include "src/common/module_loader/module_library.h"

#include <dlfcn.h>

#include <utility>

#include "src/common/errors/error.h"

namespace dojang {

ModuleLibrary::ModuleLibrary(const std::string& file, const std::string& shownPath) : m_shownPath(shownPath) {
  m_handle = ::dlopen(file.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (m_handle == nullptr) {
    const char* why = ::dlerror();
    fail(CKR_GENERAL_ERROR,
         "cannot load PKCS#11 module " + m_shownPath + ": " + (why != nullptr ? why : "dlopen failed"));
  }
}

ModuleLibrary::ModuleLibrary(ModuleLibrary&& other) noexcept
    : m_shownPath(std::move(other.m_shownPath)),
      m_handle(std::exchange(other.m_handle, nullptr)),
      m_initialised(std::exchange(other.m_initialised, nullptr)) {}

ModuleLibrary& ModuleLibrary::operator=(ModuleLibrary&& other) noexcept {
  if (this != &other) {
    reset();
    m_shownPath = std::move(other.m_shownPath);
    m_handle = std::exchange(other.m_handle, nullptr);
    m_initialised = std::exchange(other.m_initialised, nullptr);
  }
  return *this;
}

void* ModuleLibrary::symbol(const char* name) const noexcept {
  return m_handle != nullptr ? ::dlsym(m_handle, name) : nullptr;
}

CK_FUNCTION_LIST* ModuleLibrary::functionList() const {
  // dlsym returns void*; POSIX guarantees it converts to a function pointer.
  auto getFunctionList = reinterpret_cast<CK_C_GetFunctionList>(symbol("C_GetFunctionList"));
  if (getFunctionList == nullptr) {
    fail(CKR_GENERAL_ERROR, m_shownPath + " is not a PKCS#11 module (no C_GetFunctionList)");
  }
  CK_FUNCTION_LIST* list = nullptr;
  checkCkRv(getFunctionList(&list), "C_GetFunctionList");
  if (list == nullptr) {
    fail(CKR_GENERAL_ERROR, m_shownPath + ": C_GetFunctionList returned no function list");
  }
  return list;
}

CK_RV ModuleLibrary::initialize(CK_FUNCTION_LIST* functions, CK_C_INITIALIZE_ARGS* args) noexcept {
  if (functions == nullptr || functions->C_Initialize == nullptr) {
    return CKR_FUNCTION_NOT_SUPPORTED;
  }
  const CK_RV rv = functions->C_Initialize(args);
  if (rv == CKR_OK) {
    m_initialised = functions;
  }
  return rv;
}

void ModuleLibrary::reset() noexcept {
  if (m_initialised != nullptr && m_initialised->C_Finalize != nullptr) {
    m_initialised->C_Finalize(nullptr);
  }
  m_initialised = nullptr;
  if (m_handle != nullptr) {
    ::dlclose(m_handle);
    m_handle = nullptr;
  }
}

}  // namespace dojang
