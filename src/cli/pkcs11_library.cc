#include "src/cli/pkcs11_library.h"

#include <utility>

#include "src/common/cryptoki/two_call_list.h"
#include "src/common/errors/error.h"

namespace dojang::cli {

Pkcs11Library::Pkcs11Library(std::string path) : m_path(std::move(path)), m_library(m_path, m_path) {
  m_functions = m_library.functionList();
  CK_C_INITIALIZE_ARGS args = osLockingArgs();
  const CK_RV rv = m_library.initialize(m_functions, &args);
  if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
    throwCkRv(rv, "C_Initialize");
  }
}

Pkcs11Library::Pkcs11Library(Pkcs11Library&& other) noexcept
    : m_path(std::move(other.m_path)),
      m_library(std::move(other.m_library)),
      m_functions(std::exchange(other.m_functions, nullptr)) {}

Pkcs11Library& Pkcs11Library::operator=(Pkcs11Library&& other) noexcept {
  if (this != &other) {
    m_library = std::move(other.m_library);
    m_path = std::move(other.m_path);
    m_functions = std::exchange(other.m_functions, nullptr);
  }
  return *this;
}

Pkcs11Library::~Pkcs11Library() = default;

CK_INFO Pkcs11Library::info() const {
  CK_INFO result{};
  checkCkRv(m_functions->C_GetInfo(&result), "C_GetInfo");
  return result;
}

std::vector<CK_SLOT_ID> Pkcs11Library::slots(bool tokenPresent) const {
  const CK_BBOOL present = tokenPresent ? CK_TRUE : CK_FALSE;
  const auto getSlotList = [&](CK_SLOT_ID_PTR out, CK_ULONG_PTR count) {
    return m_functions->C_GetSlotList(present, out, count);
  };
  std::vector<CK_SLOT_ID> result;
  checkCkRv(readTwoCallList(result, getSlotList), "C_GetSlotList");
  return result;
}

CK_SLOT_INFO Pkcs11Library::slotInfo(CK_SLOT_ID slot) const {
  CK_SLOT_INFO result{};
  checkCkRv(m_functions->C_GetSlotInfo(slot, &result), "C_GetSlotInfo");
  return result;
}

CK_TOKEN_INFO Pkcs11Library::tokenInfo(CK_SLOT_ID slot) const {
  CK_TOKEN_INFO result{};
  checkCkRv(m_functions->C_GetTokenInfo(slot, &result), "C_GetTokenInfo");
  return result;
}

AttributeTemplate& AttributeTemplate::add(CK_ATTRIBUTE_TYPE type, CK_ULONG value) {
  const auto* bytes = reinterpret_cast<const std::uint8_t*>(&value);
  return add(type, Bytes(bytes, bytes + sizeof value));
}

AttributeTemplate& AttributeTemplate::add(CK_ATTRIBUTE_TYPE type, const Bytes& value) {
  m_types.push_back(type);
  m_values.push_back(value);
  return *this;
}

CK_ATTRIBUTE* AttributeTemplate::data() {
  m_attributes.clear();
  for (std::size_t i = 0; i < m_values.size(); ++i) {
    m_attributes.push_back(CK_ATTRIBUTE{m_types[i], m_values[i].data(),
                                        static_cast<CK_ULONG>(m_values[i].size())});
  }
  return m_attributes.data();
}

Session::Session(const Pkcs11Library& library, CK_SLOT_ID slot, bool readWrite)
    : m_functions(library.functions()) {
  const CK_FLAGS flags = CKF_SERIAL_SESSION | (readWrite ? CKF_RW_SESSION : 0);
  checkCkRv(m_functions->C_OpenSession(slot, flags, nullptr, nullptr, &m_handle), "C_OpenSession");
}

Session::Session(Session&& other) noexcept
    : m_functions(std::exchange(other.m_functions, nullptr)),
      m_handle(std::exchange(other.m_handle, CK_INVALID_HANDLE)) {}

Session& Session::operator=(Session&& other) noexcept {
  if (this != &other) {
    close();
    m_functions = std::exchange(other.m_functions, nullptr);
    m_handle = std::exchange(other.m_handle, CK_INVALID_HANDLE);
  }
  return *this;
}

Session::~Session() { close(); }

void Session::close() noexcept {
  if (m_functions != nullptr && m_handle != CK_INVALID_HANDLE) {
    m_functions->C_CloseSession(m_handle);
  }
  m_handle = CK_INVALID_HANDLE;
}

namespace {
// Ends a find operation however the search loop leaves.
class FindOperation final {
 public:
  FindOperation(CK_FUNCTION_LIST* functions, CK_SESSION_HANDLE session, AttributeTemplate& templ)
      : m_functions(functions), m_session(session) {
    checkCkRv(m_functions->C_FindObjectsInit(m_session, templ.data(), templ.size()),
              "C_FindObjectsInit");
  }
  FindOperation(const FindOperation&) = delete;
  FindOperation& operator=(const FindOperation&) = delete;
  ~FindOperation() { m_functions->C_FindObjectsFinal(m_session); }

  std::vector<CK_OBJECT_HANDLE> all() {
    std::vector<CK_OBJECT_HANDLE> found;
    CK_OBJECT_HANDLE batch[64];
    for (;;) {
      CK_ULONG count = 0;
      checkCkRv(m_functions->C_FindObjects(m_session, batch, std::size(batch), &count),
                "C_FindObjects");
      if (count == 0) {
        return found;
      }
      found.insert(found.end(), batch, batch + count);
    }
  }

 private:
  CK_FUNCTION_LIST* m_functions;
  CK_SESSION_HANDLE m_session;
};
}  // namespace

std::vector<CK_OBJECT_HANDLE> Session::find(AttributeTemplate& templ) const {
  FindOperation operation(m_functions, m_handle, templ);
  return operation.all();
}

std::optional<Bytes> Session::attribute(CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type) const {
  CK_ATTRIBUTE query{type, nullptr, 0};
  CK_RV rv = m_functions->C_GetAttributeValue(m_handle, object, &query, 1);
  if (rv == CKR_ATTRIBUTE_SENSITIVE || rv == CKR_ATTRIBUTE_TYPE_INVALID ||
      query.ulValueLen == CK_UNAVAILABLE_INFORMATION) {
    return std::nullopt;
  }
  checkCkRv(rv, "C_GetAttributeValue");
  Bytes value(query.ulValueLen);
  query.pValue = value.data();
  rv = m_functions->C_GetAttributeValue(m_handle, object, &query, 1);
  if (rv == CKR_ATTRIBUTE_SENSITIVE || rv == CKR_ATTRIBUTE_TYPE_INVALID) {
    return std::nullopt;
  }
  checkCkRv(rv, "C_GetAttributeValue");
  value.resize(query.ulValueLen);
  return value;
}

std::optional<CK_ULONG> Session::ulongAttribute(CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type) const {
  const auto value = attribute(object, type);
  if (!value || value->size() != sizeof(CK_ULONG)) {
    return std::nullopt;
  }
  CK_ULONG result = 0;
  std::copy(value->begin(), value->end(), reinterpret_cast<std::uint8_t*>(&result));
  return result;
}

}  // namespace dojang::cli
