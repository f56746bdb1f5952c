// A minimal PKCS#11 module for vendor_module_test: no slots, and two switches read from the
// environment when it is called:
//   MOCK_OFFER_SELF=1  its C_GetInterface also offers dojang's private front-end interface,
//                      so it looks like dojang-pkcs11.so;
//   MOCK_CANT_LOCK=1   C_Initialize answers CKR_CANT_LOCK when asked for OS locking.
#include <cstdlib>
#include <cstring>

#include "src/common/cryptoki/cryptoki.h"

#define MOCK_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

bool g_initialised = false;

bool enabled(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr && std::strcmp(value, "1") == 0;
}

CK_RV initialize(void* args) {
  if (g_initialised) {
    return CKR_CRYPTOKI_ALREADY_INITIALIZED;
  }
  const auto* initArgs = static_cast<CK_C_INITIALIZE_ARGS*>(args);
  if (initArgs != nullptr && (initArgs->flags & CKF_OS_LOCKING_OK) != 0 && enabled("MOCK_CANT_LOCK")) {
    return CKR_CANT_LOCK;
  }
  g_initialised = true;
  return CKR_OK;
}

CK_RV finalize(void*) {
  if (!g_initialised) {
    return CKR_CRYPTOKI_NOT_INITIALIZED;
  }
  g_initialised = false;
  return CKR_OK;
}

void pad(unsigned char* field, std::size_t size, const char* text) {
  std::memset(field, ' ', size);
  std::memcpy(field, text, std::strlen(text));
}

CK_RV getInfo(CK_INFO* info) {
  if (!g_initialised) {
    return CKR_CRYPTOKI_NOT_INITIALIZED;
  }
  *info = CK_INFO{};
  info->cryptokiVersion = CK_VERSION{2, 40};
  pad(info->manufacturerID, sizeof info->manufacturerID, "dojang tests");
  pad(info->libraryDescription, sizeof info->libraryDescription, "mock module");
  return CKR_OK;
}

CK_RV getSlotList(CK_BBOOL, CK_SLOT_ID*, CK_ULONG* count) {
  if (!g_initialised) {
    return CKR_CRYPTOKI_NOT_INITIALIZED;
  }
  *count = 0;
  return CKR_OK;
}

CK_FUNCTION_LIST makeList() {
  CK_FUNCTION_LIST list{};
  list.version = CK_VERSION{2, 40};
  list.C_Initialize = initialize;
  list.C_Finalize = finalize;
  list.C_GetInfo = getInfo;
  list.C_GetSlotList = getSlotList;
  return list;  // everything else NULL: "not supported"
}

CK_FUNCTION_LIST g_list = makeList();
CK_FUNCTION_LIST g_selfList = makeList();
char g_standardName[] = "PKCS 11";
char g_selfName[] = "Dojang Front End";
CK_INTERFACE g_standard{reinterpret_cast<CK_UTF8CHAR*>(g_standardName), &g_list, 0};
CK_INTERFACE g_self{reinterpret_cast<CK_UTF8CHAR*>(g_selfName), &g_selfList, 0};

}  // namespace

MOCK_EXPORT CK_RV C_GetFunctionList(CK_FUNCTION_LIST** list) {
  *list = &g_list;
  return CKR_OK;
}

MOCK_EXPORT CK_RV C_GetInterface(CK_UTF8CHAR* name, CK_VERSION*, CK_INTERFACE** found, CK_FLAGS) {
  const char* wanted = reinterpret_cast<const char*>(name);
  if (name == nullptr || std::strcmp(wanted, g_standardName) == 0) {
    *found = &g_standard;
    return CKR_OK;
  }
  if (std::strcmp(wanted, dojang::kSelfInterfaceName) == 0 && enabled("MOCK_OFFER_SELF")) {
    *found = &g_self;
    return CKR_OK;
  }
  return CKR_ARGUMENTS_BAD;
}
