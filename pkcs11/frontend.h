// The module's state and the work behind every PKCS#11 entry point. Methods return CK_RV and
// may throw (std::bad_alloc, say); entry_points.cc catches everything at the C boundary.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "pkcs11/connection_pool.h"
#include "pkcs11/marshalling.h"
#include "pkcs11/session_state.h"
#include "src/common/cryptoki/cryptoki.h"
#include "src/common/cryptoki/operation_kind.h"

namespace dojang::frontend {

class Frontend final {
 public:
  explicit Frontend(Connector connector, std::chrono::milliseconds timeout = replyTimeoutFromEnvironment());
  Frontend(const Frontend&) = delete;
  Frontend& operator=(const Frontend&) = delete;

  // Connects now so that a missing daemon is reported by C_Initialize, not by a later call.
  CK_RV connect();
  // C_Finalize: wakes blocked calls; they return CKR_CRYPTOKI_NOT_INITIALIZED.
  void finalize() noexcept;
  [[nodiscard]] bool finalized() const noexcept { return m_finalized.load(); }

  CK_RV getSlotList(CK_BBOOL tokenPresent, CK_SLOT_ID_PTR slots, CK_ULONG_PTR count);
  CK_RV getSlotInfo(CK_SLOT_ID slot, CK_SLOT_INFO_PTR info);
  CK_RV getTokenInfo(CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info);
  CK_RV getMechanismList(CK_SLOT_ID slot, CK_MECHANISM_TYPE_PTR list, CK_ULONG_PTR count);
  CK_RV getMechanismInfo(CK_SLOT_ID slot, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR info);
  CK_RV waitForSlotEvent(CK_FLAGS flags, CK_SLOT_ID_PTR slot);

  CK_RV openSession(CK_SLOT_ID slot, CK_FLAGS flags, CK_SESSION_HANDLE_PTR session);
  CK_RV closeSession(CK_SESSION_HANDLE session);
  CK_RV closeAllSessions(CK_SLOT_ID slot);
  CK_RV getSessionInfo(CK_SESSION_HANDLE session, CK_SESSION_INFO_PTR info);
  CK_RV login(CK_SESSION_HANDLE session, CK_USER_TYPE user, CK_UTF8CHAR_PTR pin, CK_ULONG pinLength);
  CK_RV logout(CK_SESSION_HANDLE session);
  CK_RV initPin(CK_SESSION_HANDLE session, CK_UTF8CHAR_PTR pin, CK_ULONG pinLength);
  CK_RV setPin(CK_SESSION_HANDLE session, CK_UTF8CHAR_PTR oldPin, CK_ULONG oldLength, CK_UTF8CHAR_PTR newPin,
               CK_ULONG newLength);

  CK_RV findObjectsInit(CK_SESSION_HANDLE session, CK_ATTRIBUTE_PTR templ, CK_ULONG count);
  CK_RV findObjects(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE_PTR objects, CK_ULONG max, CK_ULONG_PTR count);
  CK_RV findObjectsFinal(CK_SESSION_HANDLE session);
  CK_RV getAttributeValue(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object, CK_ATTRIBUTE_PTR templ,
                          CK_ULONG count);
  CK_RV setAttributeValue(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object, CK_ATTRIBUTE_PTR templ,
                          CK_ULONG count);
  CK_RV createObject(CK_SESSION_HANDLE session, CK_ATTRIBUTE_PTR templ, CK_ULONG count,
                     CK_OBJECT_HANDLE_PTR object);
  CK_RV destroyObject(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object);
  CK_RV copyObject(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object, CK_ATTRIBUTE_PTR templ, CK_ULONG count,
                   CK_OBJECT_HANDLE_PTR newObject);
  CK_RV getObjectSize(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object, CK_ULONG_PTR size);
  CK_RV generateKeyPair(CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism, CK_ATTRIBUTE_PTR publicTemplate,
                        CK_ULONG publicCount, CK_ATTRIBUTE_PTR privateTemplate, CK_ULONG privateCount,
                        CK_OBJECT_HANDLE_PTR publicKey, CK_OBJECT_HANDLE_PTR privateKey);

  // Sign, Verify, Decrypt and Digest share one shape: Init is checked (and remembered), the
  // input is gathered here, and the work is one round trip.
  using Kind = OperationKind;
  CK_RV operationInit(Kind kind, CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism, CK_OBJECT_HANDLE key);
  CK_RV operationUpdate(Kind kind, CK_SESSION_HANDLE session, CK_BYTE_PTR data, CK_ULONG length);
  // Single-part (data given) or final (data == nullptr after updates). For Verify, out is the
  // signature to check and outLength points at its length.
  CK_RV operationFinish(Kind kind, CK_SESSION_HANDLE session, CK_BYTE_PTR data, CK_ULONG length, bool singlePart,
                        CK_BYTE_PTR out, CK_ULONG_PTR outLength);
  CK_RV generateRandom(CK_SESSION_HANDLE session, CK_BYTE_PTR out, CK_ULONG length);
  // For the functions dojang does not offer on a session: CKR_SESSION_HANDLE_INVALID or `rv`.
  CK_RV refuseOnSession(CK_SESSION_HANDLE session, CK_RV rv);

 private:
  // Every call on a session looks its state up here, which drops the session's kept attributes.
  std::shared_ptr<SessionState> sessionState(CK_SESSION_HANDLE session);
  std::shared_ptr<SessionState> findSession(CK_SESSION_HANDLE session);
  // After a write, login or logout: no kept attribute reply is served any more.
  void objectsChanged() noexcept { ++m_generation; }
  // Finds a mechanism of the slot's token in the cached list, fetching the list once.
  CK_RV lookupMechanism(CK_SLOT_ID slot, CK_MECHANISM_TYPE type, wire::MechanismInfo& out);
  void forgetEverything();
  void forgetChecksIfLoggedOutLocked(CK_SLOT_ID slot);
  // The round trips; defined in frontend_calls.h, which the files using them include.
  template <wire::CallId id>
  CK_RV call(const typename wire::Call<id>::Request& request, typename wire::Call<id>::Reply& reply);
  template <wire::CallId id>
  CK_RV sessionCall(CK_SESSION_HANDLE session, const typename wire::Call<id>::Request& request,
                    typename wire::Call<id>::Reply& reply);

  ConnectionPool m_pool;
  std::atomic<bool> m_finalized{false};
  std::atomic<std::uint64_t> m_generation{0};

  std::mutex m_mutex;  // guards the maps below; never held across a round trip
  std::unordered_map<CK_SESSION_HANDLE, std::shared_ptr<SessionState>> m_sessions;
  std::map<CK_SLOT_ID, std::vector<wire::MechanismInfo>> m_mechanisms;
  // (slot, key, mechanism, its parameters, operation) combinations the daemon has accepted.
  using CheckedUse = std::tuple<CK_SLOT_ID, std::uint64_t, CK_MECHANISM_TYPE, std::uint64_t, std::uint64_t,
                                std::uint64_t, OperationKind>;
  std::set<CheckedUse> m_checked;
};

}  // namespace dojang::frontend
