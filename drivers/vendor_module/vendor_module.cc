#include "drivers/vendor_module/vendor_module.h"

#include <array>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <utility>

#include "src/common/cryptoki/padded_text.h"

namespace dojang::vendor {
namespace {

// PKCS#11 3.0, section 5.4: the standard interface name.
constexpr std::string_view kStandardInterfaceName = "PKCS 11";

// A module is initialised once per process; a second owner would be finalised under the first.
std::mutex g_loadedMutex;
std::set<std::string> g_loaded;

std::string baseName(const std::string& path) {
  return std::filesystem::path(path).filename().string();
}

bool startsWith(std::string_view text, std::string_view prefix) {
  return text.substr(0, prefix.size()) == prefix;
}

std::string lowered(std::string text) {
  for (char& c : text) {
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');
    }
  }
  return text;
}

std::string proxyRefusal(const std::string& path) {
  return "refusing to load " + path +
         ": it is p11-kit's proxy module, which loads every registered module, possibly "
         "dojang-pkcs11.so itself; list the real vendor modules (e.g. "
         "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so) instead";
}

// Asks C_GetInterface for a named interface; returns nullptr when the module has none.
CK_INTERFACE* findInterface(CK_C_GetInterface getInterface, std::string_view name) {
  std::array<CK_UTF8CHAR, 64> buffer{};
  name.copy(reinterpret_cast<char*>(buffer.data()), buffer.size() - 1);
  CK_INTERFACE* found = nullptr;
  const CK_RV rv = getInterface(buffer.data(), nullptr, &found, 0);
  return rv == CKR_OK ? found : nullptr;
}

}  // namespace

VendorModule::VendorModule(const std::string& path) : m_path(path) {
  try {
    load();
  } catch (...) {
    release();
    throw;
  }
}

VendorModule::~VendorModule() { release(); }

VendorModule::VendorModule(VendorModule&& other) noexcept
    : m_path(std::move(other.m_path)),
      m_realPath(std::move(other.m_realPath)),
      m_library(std::move(other.m_library)),
      m_functions(std::exchange(other.m_functions, nullptr)),
      m_registered(std::exchange(other.m_registered, false)),
      m_serialise(other.m_serialise),
      m_viaInterface(other.m_viaInterface),
      m_callMutex(std::exchange(other.m_callMutex, std::make_unique<std::mutex>())),
      m_info(std::move(other.m_info)) {}

VendorModule& VendorModule::operator=(VendorModule&& other) noexcept {
  if (this != &other) {
    release();
    m_path = std::move(other.m_path);
    m_realPath = std::move(other.m_realPath);
    m_library = std::move(other.m_library);
    m_functions = std::exchange(other.m_functions, nullptr);
    m_registered = std::exchange(other.m_registered, false);
    m_serialise = other.m_serialise;
    m_viaInterface = other.m_viaInterface;
    std::swap(m_callMutex, other.m_callMutex);
    m_info = std::move(other.m_info);
  }
  return *this;
}

void VendorModule::load() {
  std::error_code error;
  const std::filesystem::path canonical = std::filesystem::canonical(m_path, error);
  if (error) {
    fail(CKR_GENERAL_ERROR, "cannot load PKCS#11 module " + m_path + ": " + error.message());
  }
  m_realPath = canonical.string();
  refuseByPath();

  {
    const std::lock_guard lock(g_loadedMutex);
    if (!g_loaded.insert(m_realPath).second) {
      fail(CKR_CRYPTOKI_ALREADY_INITIALIZED,
           "PKCS#11 module " + m_path + " is already loaded in this process");
    }
    m_registered = true;
  }

  m_library = ModuleLibrary(m_realPath, m_path);
  resolveFunctionList();
  initialise();
  readInfo();
}

void VendorModule::refuseByPath() const {
  if (const char* self = std::getenv("DOJANG_SELF_MODULE"); self != nullptr && *self != '\0') {
    std::error_code error;
    const std::filesystem::path selfPath = std::filesystem::canonical(self, error);
    if (!error && selfPath.string() == m_realPath) {
      fail(CKR_GENERAL_ERROR, "refusing to load " + m_path +
                                  ": it is dojang's own PKCS#11 module ($DOJANG_SELF_MODULE); "
                                  "list the vendor's module instead");
    }
  }
  // Debian's p11-kit-proxy.so is a symlink to libp11-kit.so.0.x, which exports the proxy too.
  const std::string given = baseName(m_path);
  const std::string real = baseName(m_realPath);
  if (given == "p11-kit-proxy.so" || startsWith(real, "p11-kit-proxy.so") ||
      startsWith(real, "libp11-kit.so")) {
    fail(CKR_GENERAL_ERROR, proxyRefusal(m_path));
  }
}

void VendorModule::resolveFunctionList() {
  // dlsym returns void*; POSIX guarantees it converts to a function pointer.
  auto getInterface = reinterpret_cast<CK_C_GetInterface>(m_library.symbol("C_GetInterface"));
  if (getInterface != nullptr) {
    if (findInterface(getInterface, kSelfInterfaceName) != nullptr) {
      fail(CKR_GENERAL_ERROR, "refusing to load " + m_path +
                                  ": it is dojang's own PKCS#11 module (dojang-pkcs11.so); "
                                  "list the vendor's module instead");
    }
    CK_INTERFACE* standard = findInterface(getInterface, kStandardInterfaceName);
    if (standard != nullptr && standard->pFunctionList != nullptr) {
      // A 3.x CK_FUNCTION_LIST_3_0 starts with the 2.40 list; we only use that part.
      auto* list = static_cast<CK_FUNCTION_LIST*>(standard->pFunctionList);
      if (list->version.major >= 2) {
        m_functions = list;
        m_viaInterface = true;
        return;
      }
    }
  }
  m_functions = m_library.functionList();
}

void VendorModule::initialise() {
  CK_C_INITIALIZE_ARGS args = osLockingArgs();
  CK_RV rv = m_library.initialize(m_functions, &args);
  if (rv == CKR_CANT_LOCK) {
    // The module can only run single-threaded: initialise it plainly and serialise our calls.
    m_serialise = true;
    rv = m_library.initialize(m_functions, nullptr);
  }
  if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED) {
    fail(rv, "PKCS#11 module " + m_path + " was already initialised by someone else in this process");
  }
  checkCkRv(rv, "C_Initialize");
}

void VendorModule::readInfo() {
  CK_INFO info{};
  check("C_GetInfo", &CK_FUNCTION_LIST::C_GetInfo, &info);
  m_info.manufacturer = paddedText(info.manufacturerID);
  m_info.description = paddedText(info.libraryDescription);
  m_info.cryptokiVersion = info.cryptokiVersion;
  m_info.libraryVersion = info.libraryVersion;
  // A copy of the proxy under another name still says who it is (p11-kit 0.24: "PKCS#11 Kit",
  // "PKCS#11 Kit Proxy Module").
  if (m_info.manufacturer == "PKCS#11 Kit" &&
      lowered(m_info.description).find("proxy") != std::string::npos) {
    fail(CKR_GENERAL_ERROR, proxyRefusal(m_path));
  }
}

void VendorModule::release() noexcept {
  m_library.reset();
  m_functions = nullptr;
  if (m_registered) {
    try {
      const std::lock_guard lock(g_loadedMutex);
      g_loaded.erase(m_realPath);
    } catch (...) {  // std::mutex::lock may throw in theory; nothing sensible to do here
    }
    m_registered = false;
  }
}

}  // namespace dojang::vendor
