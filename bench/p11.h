// The PKCS#11 side of dojang-p11bench: errors, the loaded module, sessions, the PIN, and the token
// and the bench's key pairs on it.
#pragma once

#include <dlfcn.h>

#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "src/common/cryptoki/cryptoki.h"

// p11-kit's header maps its lower-case names onto the standard ones with object-like macros;
// `count` and `value` would otherwise rewrite std::chrono's count() and our own identifiers.
#undef count
#undef value

namespace dojang::bench {

// ---------------------------------------------------------------------------------------------
// Errors: the one place where a CK_RV becomes an exception.

std::string rvName(CK_RV rv);

class P11Error final : public std::runtime_error {
 public:
  P11Error(CK_RV rv, std::string_view call)
      : std::runtime_error(std::string(call) + " failed: " + rvName(rv)), m_rv(rv) {}
  [[nodiscard]] CK_RV rv() const noexcept { return m_rv; }

 private:
  CK_RV m_rv;
};

inline void check(CK_RV rv, std::string_view call) {
  if (rv != CKR_OK) throw P11Error(rv, call);
}

// ---------------------------------------------------------------------------------------------
// RAII owners: the loaded and initialised module, and one session.

class Module final {
 public:
  explicit Module(const std::string& path) {
    void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
      const char* why = dlerror();
      throw std::runtime_error("dlopen " + path + ": " + (why != nullptr ? why : "unknown error"));
    }
    auto* getList = reinterpret_cast<CK_C_GetFunctionList>(dlsym(handle, "C_GetFunctionList"));
    if (getList == nullptr) {
      dlclose(handle);
      throw std::runtime_error(path + " exports no C_GetFunctionList");
    }
    CK_RV rv = getList(&m_fns);
    if (rv != CKR_OK || m_fns == nullptr) {
      dlclose(handle);
      throw P11Error(rv == CKR_OK ? CKR_GENERAL_ERROR : rv, "C_GetFunctionList");
    }
    // Like NSS: the module may use its own OS locking, we call it from several threads.
    CK_C_INITIALIZE_ARGS args{};
    args.flags = CKF_OS_LOCKING_OK;
    rv = m_fns->C_Initialize(&args);
    if (rv != CKR_OK) {
      dlclose(handle);
      throw P11Error(rv, "C_Initialize");
    }
  }
  ~Module() {
    m_fns->C_Finalize(nullptr);
    // SoftHSM and OpenSSL-based modules do not survive being unloaded and reloaded reliably;
    // the process exits right after this anyway, so the library stays mapped.
  }
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  [[nodiscard]] CK_FUNCTION_LIST& fns() const noexcept { return *m_fns; }

 private:
  CK_FUNCTION_LIST* m_fns = nullptr;
};

class Session final {
 public:
  Session(const Module& module, CK_SLOT_ID slot, bool readWrite) : m_fns(&module.fns()) {
    CK_FLAGS flags = CKF_SERIAL_SESSION | (readWrite ? CKF_RW_SESSION : 0);
    check(m_fns->C_OpenSession(slot, flags, nullptr, nullptr, &m_handle), "C_OpenSession");
  }
  ~Session() {
    if (m_fns != nullptr) m_fns->C_CloseSession(m_handle);
  }
  Session(Session&& other) noexcept
      : m_fns(std::exchange(other.m_fns, nullptr)), m_handle(other.m_handle) {}
  Session& operator=(Session&& other) noexcept {
    if (this != &other) {
      if (m_fns != nullptr) m_fns->C_CloseSession(m_handle);
      m_fns = std::exchange(other.m_fns, nullptr);
      m_handle = other.m_handle;
    }
    return *this;
  }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  [[nodiscard]] CK_FUNCTION_LIST& fns() const noexcept { return *m_fns; }
  [[nodiscard]] CK_SESSION_HANDLE handle() const noexcept { return m_handle; }

 private:
  CK_FUNCTION_LIST* m_fns;
  CK_SESSION_HANDLE m_handle = 0;
};

// The PIN lives here and is wiped when the options go away.
class Pin final {
 public:
  Pin() = default;
  explicit Pin(std::string_view text) : m_bytes(text.begin(), text.end()) {}
  ~Pin() { wipe(); }
  Pin(Pin&& other) noexcept : m_bytes(std::move(other.m_bytes)) {}
  Pin(const Pin&) = delete;
  Pin& operator=(const Pin&) = delete;
  Pin& operator=(Pin&& other) noexcept {
    wipe();
    m_bytes = std::move(other.m_bytes);
    return *this;
  }
  [[nodiscard]] bool empty() const noexcept { return m_bytes.empty(); }
  [[nodiscard]] CK_UTF8CHAR* data() noexcept { return m_bytes.data(); }
  [[nodiscard]] CK_ULONG size() const noexcept { return m_bytes.size(); }

 private:
  void wipe() noexcept {
    volatile CK_UTF8CHAR* p = m_bytes.data();
    for (std::size_t i = 0; i < m_bytes.size(); ++i) p[i] = 0;
  }
  std::vector<CK_UTF8CHAR> m_bytes;
};

// ---------------------------------------------------------------------------------------------
// Token, login and key discovery / creation.

std::string trimPadded(const unsigned char* text, std::size_t size);

CK_SLOT_ID findSlot(const Module& module, std::string_view label);

void login(const Session& session, Pin& pin);

struct KeyPair {
  CK_OBJECT_HANDLE pub = 0;
  CK_OBJECT_HANDLE priv = 0;
};

struct Keys {
  KeyPair ec;
  KeyPair rsa;
};

inline constexpr std::string_view kEcLabel = "bench-ec";
inline constexpr std::string_view kRsaLabel = "bench-rsa";

KeyPair findOrCreate(const Session& session, std::string_view label, bool ec, bool mayCreate);

}  // namespace dojang::bench
