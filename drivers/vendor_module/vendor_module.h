// One vendor PKCS#11 module (OpenSC, SoftHSM, ykcs11, a Korean token vendor's library) loaded
// into dojangd: dlopen, function list, C_Initialize in the constructor; C_Finalize and dlclose
// in the destructor.
//
// Refuses, before initialising anything, to load dojang's own front end (dojang-pkcs11.so,
// recognised by its private C_GetInterface name or by $DOJANG_SELF_MODULE) and p11-kit's proxy,
// either of which would make dojangd talk to itself.
//
// Every call into the module goes through call()/check(). When the module cannot use OS locking
// (C_Initialize answered CKR_CANT_LOCK) those calls are serialised here.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "src/common/cryptoki/cryptoki.h"
#include "src/common/errors/error.h"
#include "src/common/module_loader/module_library.h"

namespace dojang::vendor {

struct ModuleInfo {
  std::string manufacturer;  // CK_INFO.manufacturerID, trimmed
  std::string description;   // CK_INFO.libraryDescription, trimmed
  CK_VERSION cryptokiVersion{};
  CK_VERSION libraryVersion{};
};

class VendorModule final {
 public:
  // Loads and initialises the module at `path`. Throws dojang::Error when the module cannot be
  // loaded, is refused, or fails to initialise.
  explicit VendorModule(const std::string& path);
  ~VendorModule();
  VendorModule(const VendorModule&) = delete;
  VendorModule& operator=(const VendorModule&) = delete;
  VendorModule(VendorModule&& other) noexcept;
  VendorModule& operator=(VendorModule&& other) noexcept;

  [[nodiscard]] const std::string& path() const noexcept { return m_path; }
  [[nodiscard]] const std::string& realPath() const noexcept { return m_realPath; }
  [[nodiscard]] const ModuleInfo& info() const noexcept { return m_info; }
  // True when the module could not lock for itself and calls are serialised by us.
  [[nodiscard]] bool serialised() const noexcept { return m_serialise; }
  // True when the function list came from C_GetInterface("PKCS 11").
  [[nodiscard]] bool viaInterface() const noexcept { return m_viaInterface; }

  // Calls one function of the module's list, e.g. call(&CK_FUNCTION_LIST::C_GetSlotList, ...).
  // A function the module leaves NULL answers CKR_FUNCTION_NOT_SUPPORTED.
  template <class Fn, class... Args>
  CK_RV call(Fn CK_FUNCTION_LIST::*function, Args... args) const {
    if (m_functions == nullptr) {
      return CKR_CRYPTOKI_NOT_INITIALIZED;
    }
    Fn entry = m_functions->*function;
    if (entry == nullptr) {
      return CKR_FUNCTION_NOT_SUPPORTED;
    }
    std::unique_lock lock(*m_callMutex, std::defer_lock);
    if (m_serialise) {
      lock.lock();
    }
    return entry(args...);
  }

  // call() that throws dojang::Error (via checkCkRv) unless the module answers CKR_OK.
  template <class Fn, class... Args>
  void check(std::string_view name, Fn CK_FUNCTION_LIST::*function, Args... args) const {
    checkCkRv(call(function, args...), name);
  }

 private:
  void load();
  void refuseByPath() const;
  void resolveFunctionList();
  void initialise();
  void readInfo();
  void release() noexcept;

  std::string m_path;
  std::string m_realPath;
  ModuleLibrary m_library;
  CK_FUNCTION_LIST* m_functions = nullptr;
  bool m_registered = false;
  bool m_serialise = false;
  bool m_viaInterface = false;
  std::unique_ptr<std::mutex> m_callMutex = std::make_unique<std::mutex>();
  ModuleInfo m_info;
};

}  // namespace dojang::vendor
