// The CLI's own PKCS#11 client: loads a module with dlopen exactly as applications do, so
// `dojang tokens` sees what Firefox sees. Separate from drivers/, which belong to the daemon.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "src/common/cryptoki/cryptoki.h"
#include "src/common/module_loader/module_library.h"

namespace dojang::cli {

using Bytes = std::vector<std::uint8_t>;

// Owns a loaded and initialised module: dlopen + C_GetFunctionList + C_Initialize in the
// constructor, C_Finalize + dlclose in the destructor. Move-only.
class Pkcs11Library final {
 public:
  // Throws dojang::Error when the file cannot be loaded or the module refuses to initialise.
  explicit Pkcs11Library(std::string path);
  Pkcs11Library(Pkcs11Library&& other) noexcept;
  Pkcs11Library& operator=(Pkcs11Library&& other) noexcept;
  Pkcs11Library(const Pkcs11Library&) = delete;
  Pkcs11Library& operator=(const Pkcs11Library&) = delete;
  ~Pkcs11Library();

  [[nodiscard]] const std::string& path() const noexcept { return m_path; }
  [[nodiscard]] CK_FUNCTION_LIST* functions() const noexcept { return m_functions; }

  [[nodiscard]] CK_INFO info() const;
  [[nodiscard]] std::vector<CK_SLOT_ID> slots(bool tokenPresent) const;
  [[nodiscard]] CK_SLOT_INFO slotInfo(CK_SLOT_ID slot) const;
  [[nodiscard]] CK_TOKEN_INFO tokenInfo(CK_SLOT_ID slot) const;

 private:
  std::string m_path;
  ModuleLibrary m_library;  // finalises only what it initialised, not someone else's C_Initialize
  CK_FUNCTION_LIST* m_functions = nullptr;
};

// An attribute template that owns its values, so the pointers stay valid while it lives.
class AttributeTemplate final {
 public:
  AttributeTemplate& add(CK_ATTRIBUTE_TYPE type, CK_ULONG value);
  AttributeTemplate& add(CK_ATTRIBUTE_TYPE type, const Bytes& value);
  // The CK_ATTRIBUTE array; valid until the next add().
  [[nodiscard]] CK_ATTRIBUTE* data();
  [[nodiscard]] CK_ULONG size() const noexcept { return static_cast<CK_ULONG>(m_values.size()); }

 private:
  std::vector<CK_ATTRIBUTE_TYPE> m_types;
  std::vector<Bytes> m_values;
  std::vector<CK_ATTRIBUTE> m_attributes;
};

// A session, read-only unless asked otherwise (PIN changes need read-write); closes itself. Move-only.
class Session final {
 public:
  Session(const Pkcs11Library& library, CK_SLOT_ID slot, bool readWrite = false);
  Session(Session&& other) noexcept;
  Session& operator=(Session&& other) noexcept;
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  ~Session();

  // Every object matching the template (C_FindObjectsInit/C_FindObjects/C_FindObjectsFinal).
  [[nodiscard]] std::vector<CK_OBJECT_HANDLE> find(AttributeTemplate& templ) const;
  // One attribute's value; nullopt when the token will not reveal it (sensitive, absent).
  [[nodiscard]] std::optional<Bytes> attribute(CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type) const;
  [[nodiscard]] std::optional<CK_ULONG> ulongAttribute(CK_OBJECT_HANDLE object,
                                                       CK_ATTRIBUTE_TYPE type) const;
  // For the calls this class does not wrap (C_Login, C_SetPIN, C_InitPIN).
  [[nodiscard]] CK_SESSION_HANDLE handle() const noexcept { return m_handle; }

 private:
  void close() noexcept;

  CK_FUNCTION_LIST* m_functions = nullptr;
  CK_SESSION_HANDLE m_handle = CK_INVALID_HANDLE;
};

}  // namespace dojang::cli
