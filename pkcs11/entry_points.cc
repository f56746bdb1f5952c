// The exported PKCS#11 C functions: each converts nothing, checks that the module is
// initialised in this process, calls the Frontend, and never lets an exception out.
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>

#include "pkcs11/frontend.h"
#include "pkcs11/frontend_testing.h"
#include "src/common/cryptoki/cryptoki.h"
#include "src/common/cryptoki/padded_text.h"
#include "src/common/version/dojang_version.h"
#include "src/common/wire/socket_path.h"

namespace {

using dojang::frontend::Frontend;
using Kind = Frontend::Kind;

std::mutex g_mutex;
std::shared_ptr<Frontend> g_frontend;
pid_t g_initializedPid = 0;
dojang::frontend::Connector g_testConnector;

// The frontend for this process, or null before C_Initialize, after C_Finalize, and in a
// forked child that has not called C_Initialize itself.
std::shared_ptr<Frontend> current() {
  std::lock_guard lock(g_mutex);
  if (!g_frontend || g_initializedPid != ::getpid()) {
    return nullptr;
  }
  return g_frontend;
}

template <class Work>
CK_RV withFrontend(Work&& work) noexcept {
  try {
    auto frontend = current();
    if (!frontend || frontend->finalized()) {
      return CKR_CRYPTOKI_NOT_INITIALIZED;
    }
    return work(*frontend);
  } catch (const std::bad_alloc&) {
    return CKR_HOST_MEMORY;
  } catch (...) {
    return CKR_GENERAL_ERROR;
  }
}

CK_RV initialize(CK_VOID_PTR initArgs) noexcept {
  try {
    // Inside dojangd this module would talk to itself: refuse, however it was loaded.
    if (std::getenv("DOJANG_INSIDE_DAEMON") != nullptr) {
      return CKR_GENERAL_ERROR;
    }
    if (initArgs != nullptr) {
      const auto* args = static_cast<const CK_C_INITIALIZE_ARGS*>(initArgs);
      if (args->pReserved != nullptr) {
        return CKR_ARGUMENTS_BAD;
      }
      const bool allMutexFunctions = args->CreateMutex && args->DestroyMutex && args->LockMutex && args->UnlockMutex;
      const bool noMutexFunctions = !args->CreateMutex && !args->DestroyMutex && !args->LockMutex && !args->UnlockMutex;
      if (!allMutexFunctions && !noMutexFunctions) {
        return CKR_ARGUMENTS_BAD;
      }
      // With or without CKF_OS_LOCKING_OK we lock with the OS's primitives, which PKCS#11
      // allows whenever the application passes no mutex functions or sets that flag; an
      // application that insists on its own mutexes gets OS locking too, which is safe.
    }
    std::shared_ptr<Frontend> fresh;
    {
      std::lock_guard lock(g_mutex);
      if (g_frontend && g_initializedPid == ::getpid()) {
        return CKR_CRYPTOKI_ALREADY_INITIALIZED;
      }
      if (g_frontend) {
        // Forked child: the parent's connections are shared sockets. Never use or shut them
        // down from here; leave the inherited state alone and start afresh.
        new std::shared_ptr<Frontend>(std::move(g_frontend));  // deliberately leaked
      }
      const auto timeout = dojang::frontend::replyTimeoutFromEnvironment();
      auto connector = g_testConnector ? g_testConnector
                                       : dojang::frontend::socketConnector(dojang::wire::defaultSocketPath(), timeout);
      fresh = std::make_shared<Frontend>(std::move(connector), timeout);
    }
    if (const CK_RV rv = fresh->connect(); rv != CKR_OK) {
      return rv;
    }
    std::lock_guard lock(g_mutex);
    if (g_frontend && g_initializedPid == ::getpid()) {
      return CKR_CRYPTOKI_ALREADY_INITIALIZED;  // another thread won the race
    }
    g_frontend = std::move(fresh);
    g_initializedPid = ::getpid();
    return CKR_OK;
  } catch (const std::bad_alloc&) {
    return CKR_HOST_MEMORY;
  } catch (...) {
    return CKR_GENERAL_ERROR;
  }
}

CK_RV finalize(CK_VOID_PTR reserved) noexcept {
  if (reserved != nullptr) {
    return CKR_ARGUMENTS_BAD;
  }
  std::shared_ptr<Frontend> ending;
  {
    std::lock_guard lock(g_mutex);
    if (!g_frontend || g_initializedPid != ::getpid()) {
      return CKR_CRYPTOKI_NOT_INITIALIZED;
    }
    ending = std::move(g_frontend);
  }
  ending->finalize();
  return CKR_OK;
}

CK_RV getInfo(CK_INFO_PTR info) noexcept {
  if (!current()) {
    return CKR_CRYPTOKI_NOT_INITIALIZED;
  }
  if (info == nullptr) {
    return CKR_ARGUMENTS_BAD;
  }
  info->cryptokiVersion = {2, 40};
  dojang::padText(info->manufacturerID, "dojang");
  info->flags = 0;
  dojang::padText(info->libraryDescription, "dojang PKCS#11 front end");
  info->libraryVersion = {dojang::kVersionMajor, dojang::kVersionMinor};
  return CKR_OK;
}

CK_RV getFunctionList(CK_FUNCTION_LIST_PTR_PTR list) noexcept;

// ---- slots and tokens ----
CK_RV getSlotList(CK_BBOOL present, CK_SLOT_ID_PTR slots, CK_ULONG_PTR count) noexcept {
  return withFrontend([&](Frontend& f) { return f.getSlotList(present, slots, count); });
}
CK_RV getSlotInfo(CK_SLOT_ID slot, CK_SLOT_INFO_PTR info) noexcept {
  return withFrontend([&](Frontend& f) { return f.getSlotInfo(slot, info); });
}
CK_RV getTokenInfo(CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info) noexcept {
  return withFrontend([&](Frontend& f) { return f.getTokenInfo(slot, info); });
}
CK_RV getMechanismList(CK_SLOT_ID slot, CK_MECHANISM_TYPE_PTR list, CK_ULONG_PTR count) noexcept {
  return withFrontend([&](Frontend& f) { return f.getMechanismList(slot, list, count); });
}
CK_RV getMechanismInfo(CK_SLOT_ID slot, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR info) noexcept {
  return withFrontend([&](Frontend& f) { return f.getMechanismInfo(slot, type, info); });
}
CK_RV waitForSlotEvent(CK_FLAGS flags, CK_SLOT_ID_PTR slot, CK_VOID_PTR reserved) noexcept {
  if (reserved != nullptr) {
    return CKR_ARGUMENTS_BAD;
  }
  return withFrontend([&](Frontend& f) { return f.waitForSlotEvent(flags, slot); });
}

// ---- sessions ----
CK_RV openSession(CK_SLOT_ID slot, CK_FLAGS flags, CK_VOID_PTR, CK_NOTIFY, CK_SESSION_HANDLE_PTR session) noexcept {
  return withFrontend([&](Frontend& f) { return f.openSession(slot, flags, session); });
}
CK_RV closeSession(CK_SESSION_HANDLE session) noexcept {
  return withFrontend([&](Frontend& f) { return f.closeSession(session); });
}
CK_RV closeAllSessions(CK_SLOT_ID slot) noexcept {
  return withFrontend([&](Frontend& f) { return f.closeAllSessions(slot); });
}
CK_RV getSessionInfo(CK_SESSION_HANDLE session, CK_SESSION_INFO_PTR info) noexcept {
  return withFrontend([&](Frontend& f) { return f.getSessionInfo(session, info); });
}
CK_RV login(CK_SESSION_HANDLE session, CK_USER_TYPE user, CK_UTF8CHAR_PTR pin, CK_ULONG length) noexcept {
  return withFrontend([&](Frontend& f) { return f.login(session, user, pin, length); });
}
CK_RV logout(CK_SESSION_HANDLE session) noexcept {
  return withFrontend([&](Frontend& f) { return f.logout(session); });
}
CK_RV initPin(CK_SESSION_HANDLE session, CK_UTF8CHAR_PTR pin, CK_ULONG length) noexcept {
  return withFrontend([&](Frontend& f) { return f.initPin(session, pin, length); });
}
CK_RV setPin(CK_SESSION_HANDLE session, CK_UTF8CHAR_PTR oldPin, CK_ULONG oldLength, CK_UTF8CHAR_PTR newPin,
             CK_ULONG newLength) noexcept {
  return withFrontend([&](Frontend& f) { return f.setPin(session, oldPin, oldLength, newPin, newLength); });
}

// ---- objects ----
CK_RV findObjectsInit(CK_SESSION_HANDLE session, CK_ATTRIBUTE_PTR templ, CK_ULONG count) noexcept {
  return withFrontend([&](Frontend& f) { return f.findObjectsInit(session, templ, count); });
}
CK_RV findObjects(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE_PTR objects, CK_ULONG max, CK_ULONG_PTR count) noexcept {
  return withFrontend([&](Frontend& f) { return f.findObjects(session, objects, max, count); });
}
CK_RV findObjectsFinal(CK_SESSION_HANDLE session) noexcept {
  return withFrontend([&](Frontend& f) { return f.findObjectsFinal(session); });
}
CK_RV getAttributeValue(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object, CK_ATTRIBUTE_PTR templ,
                        CK_ULONG count) noexcept {
  return withFrontend([&](Frontend& f) { return f.getAttributeValue(session, object, templ, count); });
}
CK_RV setAttributeValue(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object, CK_ATTRIBUTE_PTR templ,
                        CK_ULONG count) noexcept {
  return withFrontend([&](Frontend& f) { return f.setAttributeValue(session, object, templ, count); });
}
CK_RV createObject(CK_SESSION_HANDLE session, CK_ATTRIBUTE_PTR templ, CK_ULONG count,
                   CK_OBJECT_HANDLE_PTR object) noexcept {
  return withFrontend([&](Frontend& f) { return f.createObject(session, templ, count, object); });
}
CK_RV destroyObject(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object) noexcept {
  return withFrontend([&](Frontend& f) { return f.destroyObject(session, object); });
}
CK_RV copyObject(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object, CK_ATTRIBUTE_PTR templ, CK_ULONG count,
                 CK_OBJECT_HANDLE_PTR newObject) noexcept {
  return withFrontend([&](Frontend& f) { return f.copyObject(session, object, templ, count, newObject); });
}
CK_RV getObjectSize(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object, CK_ULONG_PTR size) noexcept {
  return withFrontend([&](Frontend& f) { return f.getObjectSize(session, object, size); });
}
CK_RV generateKeyPair(CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism, CK_ATTRIBUTE_PTR publicTemplate,
                      CK_ULONG publicCount, CK_ATTRIBUTE_PTR privateTemplate, CK_ULONG privateCount,
                      CK_OBJECT_HANDLE_PTR publicKey, CK_OBJECT_HANDLE_PTR privateKey) noexcept {
  return withFrontend([&](Frontend& f) {
    return f.generateKeyPair(session, mechanism, publicTemplate, publicCount, privateTemplate, privateCount,
                             publicKey, privateKey);
  });
}

// ---- cryptographic operations ----
template <Kind kind>
CK_RV operationInit(CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism, CK_OBJECT_HANDLE key) noexcept {
  return withFrontend([&](Frontend& f) { return f.operationInit(kind, session, mechanism, key); });
}
template <Kind kind>
CK_RV operationUpdate(CK_SESSION_HANDLE session, CK_BYTE_PTR data, CK_ULONG length) noexcept {
  return withFrontend([&](Frontend& f) { return f.operationUpdate(kind, session, data, length); });
}
template <Kind kind>
CK_RV operationSingle(CK_SESSION_HANDLE session, CK_BYTE_PTR data, CK_ULONG length, CK_BYTE_PTR out,
                      CK_ULONG_PTR outLength) noexcept {
  return withFrontend([&](Frontend& f) { return f.operationFinish(kind, session, data, length, true, out, outLength); });
}
template <Kind kind>
CK_RV operationFinal(CK_SESSION_HANDLE session, CK_BYTE_PTR out, CK_ULONG_PTR outLength) noexcept {
  return withFrontend([&](Frontend& f) { return f.operationFinish(kind, session, nullptr, 0, false, out, outLength); });
}
CK_RV digestInit(CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism) noexcept {
  return operationInit<Kind::Digest>(session, mechanism, 0);
}
CK_RV verify(CK_SESSION_HANDLE session, CK_BYTE_PTR data, CK_ULONG length, CK_BYTE_PTR signature,
             CK_ULONG signatureLength) noexcept {
  return operationSingle<Kind::Verify>(session, data, length, signature, &signatureLength);
}
CK_RV verifyFinal(CK_SESSION_HANDLE session, CK_BYTE_PTR signature, CK_ULONG signatureLength) noexcept {
  return operationFinal<Kind::Verify>(session, signature, &signatureLength);
}
CK_RV generateRandom(CK_SESSION_HANDLE session, CK_BYTE_PTR out, CK_ULONG length) noexcept {
  return withFrontend([&](Frontend& f) { return f.generateRandom(session, out, length); });
}
CK_RV seedRandom(CK_SESSION_HANDLE session, CK_BYTE_PTR, CK_ULONG) noexcept {
  return withFrontend([&](Frontend& f) { return f.refuseOnSession(session, CKR_RANDOM_SEED_NOT_SUPPORTED); });
}
// Legacy parallel functions (PKCS#11 2.40 section 5.16).
CK_RV getFunctionStatus(CK_SESSION_HANDLE session) noexcept {
  return withFrontend([&](Frontend& f) { return f.refuseOnSession(session, CKR_FUNCTION_NOT_PARALLEL); });
}
CK_RV cancelFunction(CK_SESSION_HANDLE session) noexcept {
  return withFrontend([&](Frontend& f) { return f.refuseOnSession(session, CKR_FUNCTION_NOT_PARALLEL); });
}

// Everything dojang does not offer, one stub per signature shape. Like every function but
// C_Initialize and C_GetFunctionList, it needs an initialised library first.
template <class... Args>
CK_RV notSupported(Args...) noexcept {
  return withFrontend([](Frontend&) { return CKR_FUNCTION_NOT_SUPPORTED; });
}

CK_FUNCTION_LIST g_functionList = {
    {2, 40},
    initialize,
    finalize,
    getInfo,
    getFunctionList,
    getSlotList,
    getSlotInfo,
    getTokenInfo,
    getMechanismList,
    getMechanismInfo,
    notSupported<CK_SLOT_ID, CK_UTF8CHAR_PTR, CK_ULONG, CK_UTF8CHAR_PTR>,  // InitToken
    initPin,
    setPin,
    openSession,
    closeSession,
    closeAllSessions,
    getSessionInfo,
    notSupported<CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG_PTR>,                                 // GetOperationState
    notSupported<CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_OBJECT_HANDLE, CK_OBJECT_HANDLE>,  // SetOperationState
    login,
    logout,
    createObject,
    copyObject,
    destroyObject,
    getObjectSize,
    getAttributeValue,
    setAttributeValue,
    findObjectsInit,
    findObjects,
    findObjectsFinal,
    notSupported<CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_OBJECT_HANDLE>,                // EncryptInit
    notSupported<CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR>,  // Encrypt
    notSupported<CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR>,  // EncryptUpdate
    notSupported<CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG_PTR>,                         // EncryptFinal
    operationInit<Kind::Decrypt>,
    operationSingle<Kind::Decrypt>,
    notSupported<CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR>,  // DecryptUpdate
    notSupported<CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG_PTR>,                         // DecryptFinal
    digestInit,
    operationSingle<Kind::Digest>,
    operationUpdate<Kind::Digest>,
    notSupported<CK_SESSION_HANDLE, CK_OBJECT_HANDLE>,  // DigestKey
    operationFinal<Kind::Digest>,
    operationInit<Kind::Sign>,
    operationSingle<Kind::Sign>,
    operationUpdate<Kind::Sign>,
    operationFinal<Kind::Sign>,
    notSupported<CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_OBJECT_HANDLE>,                // SignRecoverInit
    notSupported<CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR>,  // SignRecover
    operationInit<Kind::Verify>,
    verify,
    operationUpdate<Kind::Verify>,
    verifyFinal,
    notSupported<CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_OBJECT_HANDLE>,                // VerifyRecoverInit
    notSupported<CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR>,  // VerifyRecover
    notSupported<CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR>,  // DigestEncryptUpdate
    notSupported<CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR>,  // DecryptDigestUpdate
    notSupported<CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR>,  // SignEncryptUpdate
    notSupported<CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR>,  // DecryptVerifyUpdate
    notSupported<CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_ATTRIBUTE_PTR, CK_ULONG, CK_OBJECT_HANDLE_PTR>,  // GenerateKey
    generateKeyPair,
    notSupported<CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_OBJECT_HANDLE, CK_OBJECT_HANDLE, CK_BYTE_PTR,
                 CK_ULONG_PTR>,  // WrapKey
    notSupported<CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_OBJECT_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_ATTRIBUTE_PTR,
                 CK_ULONG, CK_OBJECT_HANDLE_PTR>,  // UnwrapKey
    notSupported<CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_OBJECT_HANDLE, CK_ATTRIBUTE_PTR, CK_ULONG,
                 CK_OBJECT_HANDLE_PTR>,  // DeriveKey
    seedRandom,
    generateRandom,
    getFunctionStatus,
    cancelFunction,
    waitForSlotEvent,
};

CK_RV getFunctionList(CK_FUNCTION_LIST_PTR_PTR list) noexcept {
  if (list == nullptr) {
    return CKR_ARGUMENTS_BAD;
  }
  *list = &g_functionList;
  return CKR_OK;
}

CK_UTF8CHAR g_standardName[] = "PKCS 11";
CK_UTF8CHAR g_selfName[] = "Dojang Front End";
CK_INTERFACE g_interfaces[] = {
    {g_standardName, &g_functionList, 0},
    // Lets dojangd recognise this module without initialising it (it must never load it).
    {g_selfName, &g_functionList, 0},
};

}  // namespace

namespace dojang::frontend {
void setConnectorForTesting(Connector connector) {
  std::lock_guard lock(g_mutex);
  g_testConnector = std::move(connector);
}
CK_FUNCTION_LIST* functionListForTesting() { return &g_functionList; }
}  // namespace dojang::frontend

extern "C" {

__attribute__((visibility("default"))) CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list) {
  return getFunctionList(list);
}

__attribute__((visibility("default"))) CK_RV C_GetInterfaceList(CK_INTERFACE_PTR interfaces, CK_ULONG_PTR count) {
  if (count == nullptr) {
    return CKR_ARGUMENTS_BAD;
  }
  constexpr CK_ULONG available = sizeof g_interfaces / sizeof g_interfaces[0];
  if (interfaces == nullptr) {
    *count = available;
    return CKR_OK;
  }
  if (*count < available) {
    *count = available;
    return CKR_BUFFER_TOO_SMALL;
  }
  std::memcpy(interfaces, g_interfaces, sizeof g_interfaces);
  *count = available;
  return CKR_OK;
}

__attribute__((visibility("default"))) CK_RV C_GetInterface(CK_UTF8CHAR_PTR name, CK_VERSION_PTR version,
                                                            CK_INTERFACE_PTR_PTR interface, CK_FLAGS flags) {
  if (interface == nullptr) {
    return CKR_ARGUMENTS_BAD;
  }
  if (flags != 0 || (version != nullptr && (version->major != 2 || version->minor != 40))) {
    return CKR_ARGUMENTS_BAD;  // only a 2.40 function list is offered
  }
  for (auto& candidate : g_interfaces) {
    if (name == nullptr || std::strcmp(reinterpret_cast<const char*>(name),
                                       reinterpret_cast<const char*>(candidate.pInterfaceName)) == 0) {
      *interface = &candidate;
      return CKR_OK;
    }
  }
  return CKR_ARGUMENTS_BAD;
}

}  // extern "C"
