// A PKCS#11 module's shared object in this process, for the vendor driver (dojangd) and the
// CLI: dlopen in the constructor; C_Finalize (once initialize() has succeeded) and dlclose in
// the destructor. Which function list a caller takes and which C_Initialize answers it accepts
// are its own policy. Needs libdl and errors/ only, nothing of the daemon.
#pragma once

#include <string>

#include "src/common/cryptoki/cryptoki.h"

namespace dojang {

class ModuleLibrary final {
 public:
  ModuleLibrary() = default;
  // dlopen(file, RTLD_NOW | RTLD_LOCAL). Throws Error(CKR_GENERAL_ERROR) naming `shownPath` (the
  // path as the user gave it) when the file cannot be loaded.
  ModuleLibrary(const std::string& file, const std::string& shownPath);
  ~ModuleLibrary() { reset(); }
  ModuleLibrary(const ModuleLibrary&) = delete;
  ModuleLibrary& operator=(const ModuleLibrary&) = delete;
  ModuleLibrary(ModuleLibrary&& other) noexcept;
  ModuleLibrary& operator=(ModuleLibrary&& other) noexcept;

  // dlsym: nullptr when the module does not export `name`.
  [[nodiscard]] void* symbol(const char* name) const noexcept;
  // The list from C_GetFunctionList. Throws dojang::Error when the module has none.
  [[nodiscard]] CK_FUNCTION_LIST* functionList() const;
  // C_Initialize(args) through `functions`, returning its answer (CKR_FUNCTION_NOT_SUPPORTED when
  // the list has none). After CKR_OK, reset() and the destructor call C_Finalize through it.
  CK_RV initialize(CK_FUNCTION_LIST* functions, CK_C_INITIALIZE_ARGS* args) noexcept;
  // C_Finalize when initialised, then dlclose.
  void reset() noexcept;

 private:
  std::string m_shownPath;
  void* m_handle = nullptr;
  CK_FUNCTION_LIST* m_initialised = nullptr;  // the list C_Initialize succeeded through
};

// What every dojang caller asks C_Initialize for first: the operating system's locking.
[[nodiscard]] inline CK_C_INITIALIZE_ARGS osLockingArgs() noexcept {
  CK_C_INITIALIZE_ARGS args{};
  args.flags = CKF_OS_LOCKING_OK;
  return args;
}

}  // namespace dojang
