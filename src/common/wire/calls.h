// The dojang wire protocol: every call between dojang-pkcs11.so and dojangd, defined once.
//
// A request frame is: u32 payload length, then u16 call id, then the request's fields.
// A reply frame is: u32 payload length, then u64 CK_RV, then (only when CKR_OK) the reply's fields.
// Fields are encoded in declaration order by codec.h. Limits are in limits.h.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>

#include "src/common/cryptoki/operation_kind.h"
#include "src/common/wire/types.h"

namespace dojang::wire {

// Both ends speak every version in [kMinProtocolVersion, kProtocolVersion]. The client's Hello
// names the newest it speaks; the daemon answers with the newest both speak, or refuses a
// client outside its range (the refusal still carries its HelloReply, so the client can say
// which daemon refused it). Version 2 adds GetObjectSize, CopyObject and keepalives.
inline constexpr std::uint32_t kMinProtocolVersion = 1;
inline constexpr std::uint32_t kProtocolVersion = 2;

constexpr bool speaksProtocol(std::uint32_t version) noexcept {
  return version >= kMinProtocolVersion && version <= kProtocolVersion;
}
// The version a connection uses once a client of version `client` has said Hello.
constexpr std::uint32_t negotiatedProtocol(std::uint32_t client) noexcept {
  return std::min(client, kProtocolVersion);
}
// Keepalives (protocol 2): while a call legitimately waits (a blocking WaitForSlotEvent, a PIN
// prompt), the daemon sends reply frames carrying only this dojang-private CK_RV, at least every
// kKeepaliveInterval. The module's reply timeout restarts at each; it is never the answer.
inline constexpr std::uint64_t kReplyStillWorking = 0x80000000ull + 0x646a0001ull;
inline constexpr std::uint32_t kKeepaliveSinceProtocol = 2;
inline constexpr std::chrono::milliseconds kKeepaliveInterval{500};

// Requests and replies, named <Call>Request / <Call>Reply. Handles and slot IDs are u64.
struct HelloRequest {
  std::uint32_t protocolVersion = kProtocolVersion;
  Bytes clientId;  // random per C_Initialize; groups one process's pooled connections
  std::uint32_t pid = 0;
  std::string program;  // shown in logs and PIN prompts
  DOJANG_WIRE_FIELDS(protocolVersion, clientId, pid, program)
};
struct HelloReply {
  std::uint32_t protocolVersion = kProtocolVersion;
  Bytes daemonInstance;  // changes when dojangd restarts: old session handles are void
  std::uint32_t daemonPid = 0;
  DOJANG_WIRE_FIELDS(protocolVersion, daemonInstance, daemonPid)
};

struct GetSlotListRequest {
  bool tokenPresent = false;
  DOJANG_WIRE_FIELDS(tokenPresent)
};
struct GetSlotListReply {
  std::vector<std::uint64_t> slots;
  DOJANG_WIRE_FIELDS(slots)
};

struct SlotRequest {
  std::uint64_t slot = 0;
  DOJANG_WIRE_FIELDS(slot)
};
struct GetSlotInfoReply {
  SlotInfo info;
  DOJANG_WIRE_FIELDS(info)
};
struct GetTokenInfoReply {
  TokenInfo info;
  DOJANG_WIRE_FIELDS(info)
};
struct GetMechanismListReply {
  std::vector<MechanismInfo> mechanisms;
  DOJANG_WIRE_FIELDS(mechanisms)
};

struct WaitForSlotEventRequest {
  bool dontBlock = false;
  DOJANG_WIRE_FIELDS(dontBlock)
};
struct WaitForSlotEventReply {
  std::uint64_t slot = 0;
  DOJANG_WIRE_FIELDS(slot)
};

struct OpenSessionRequest {
  std::uint64_t slot = 0;
  std::uint64_t flags = 0;
  DOJANG_WIRE_FIELDS(slot, flags)
};
struct OpenSessionReply {
  std::uint64_t session = 0;
  DOJANG_WIRE_FIELDS(session)
};

struct SessionRequest {
  std::uint64_t session = 0;
  DOJANG_WIRE_FIELDS(session)
};
struct GetSessionInfoReply {
  SessionInfo info;
  DOJANG_WIRE_FIELDS(info)
};

struct LoginRequest {
  std::uint64_t session = 0;
  std::uint64_t userType = 0;
  bool pinGiven = false;  // false: NULL PIN, a protected authentication path
  Bytes pin;
  DOJANG_WIRE_FIELDS(session, userType, pinGiven, pin)
};
struct InitPinRequest {
  std::uint64_t session = 0;
  Bytes pin;
  DOJANG_WIRE_FIELDS(session, pin)
};
struct SetPinRequest {
  std::uint64_t session = 0;
  Bytes oldPin;
  Bytes newPin;
  DOJANG_WIRE_FIELDS(session, oldPin, newPin)
};

// Find is one round trip: the module keeps the handles and serves C_FindObjects itself.
struct FindObjectsRequest {
  std::uint64_t session = 0;
  std::vector<Attribute> templ;
  DOJANG_WIRE_FIELDS(session, templ)
};
struct FindObjectsReply {
  std::vector<std::uint64_t> objects;
  DOJANG_WIRE_FIELDS(objects)
};

struct GetAttributeValueRequest {
  std::uint64_t session = 0;
  std::uint64_t object = 0;
  std::vector<std::uint64_t> types;
  DOJANG_WIRE_FIELDS(session, object, types)
};
struct GetAttributeValueReply {
  std::vector<AttributeResult> attributes;
  DOJANG_WIRE_FIELDS(attributes)
};

struct SetAttributeValueRequest {
  std::uint64_t session = 0;
  std::uint64_t object = 0;
  std::vector<Attribute> templ;
  DOJANG_WIRE_FIELDS(session, object, templ)
};
struct CreateObjectRequest {
  std::uint64_t session = 0;
  std::vector<Attribute> templ;
  DOJANG_WIRE_FIELDS(session, templ)
};
struct ObjectReply {
  std::uint64_t object = 0;
  DOJANG_WIRE_FIELDS(object)
};
struct ObjectRequest {
  std::uint64_t session = 0;
  std::uint64_t object = 0;
  DOJANG_WIRE_FIELDS(session, object)
};
struct ObjectSizeReply {
  std::uint64_t size = 0;  // CK_ULONG as the token reports it, CK_UNAVAILABLE_INFORMATION included
  DOJANG_WIRE_FIELDS(size)
};
struct CopyObjectRequest {
  std::uint64_t session = 0;
  std::uint64_t object = 0;
  std::vector<Attribute> templ;  // applied to the copy
  DOJANG_WIRE_FIELDS(session, object, templ)
};

struct GenerateKeyPairRequest {
  std::uint64_t session = 0;
  Mechanism mechanism;
  std::vector<Attribute> publicTemplate;
  std::vector<Attribute> privateTemplate;
  DOJANG_WIRE_FIELDS(session, mechanism, publicTemplate, privateTemplate)
};
struct GenerateKeyPairReply {
  std::uint64_t publicKey = 0;
  std::uint64_t privateKey = 0;
  DOJANG_WIRE_FIELDS(publicKey, privateKey)
};

// Sent as one byte: Sign = 1, Verify = 2, Decrypt = 3 (operation_kind.h keeps these values).
using Operation = dojang::OperationKind;

// C_SignInit/C_VerifyInit/C_DecryptInit: checked once per key and mechanism, then remembered by
// the module, so steady-state signing is a single Sign round trip.
struct CheckOperationRequest {
  std::uint64_t session = 0;
  Operation operation = Operation::Sign;
  Mechanism mechanism;
  std::uint64_t key = 0;
  DOJANG_WIRE_FIELDS(session, operation, mechanism, key)
};

// Init and the whole input in one request; multi-part input is gathered by the module.
struct KeyOperationRequest {
  std::uint64_t session = 0;
  Mechanism mechanism;
  std::uint64_t key = 0;
  Bytes data;
  DOJANG_WIRE_FIELDS(session, mechanism, key, data)
};
struct VerifyRequest {
  std::uint64_t session = 0;
  Mechanism mechanism;
  std::uint64_t key = 0;
  Bytes data;
  Bytes signature;
  DOJANG_WIRE_FIELDS(session, mechanism, key, data, signature)
};
struct DigestRequest {
  std::uint64_t session = 0;
  Mechanism mechanism;
  Bytes data;
  DOJANG_WIRE_FIELDS(session, mechanism, data)
};
struct DataReply {
  Bytes data;
  DOJANG_WIRE_FIELDS(data)
};

struct GenerateRandomRequest {
  std::uint64_t session = 0;
  std::uint32_t length = 0;
  DOJANG_WIRE_FIELDS(session, length)
};

// Only the dojang CLI asks for this (`dojang status`, `dojang pin status`); the module never does,
// so its fields may grow with dojangd: the CLI and dojangd are installed together, and a CLI that
// meets an older dojangd reads a malformed reply (fields missing) and says so.
struct DaemonStatusReply {
  std::string version;
  std::uint32_t pid = 0;
  std::uint64_t uptimeSeconds = 0;
  // clients, connections and sessions count the clients other than the one asking.
  std::uint32_t clients = 0;
  std::uint32_t connections = 0;
  std::uint32_t sessions = 0;
  std::vector<BackendStatus> backends;
  std::vector<SlotStatus> slots;
  DOJANG_WIRE_FIELDS(version, pid, uptimeSeconds, clients, connections, sessions, backends, slots)
};

// X(id, Name, Request, Reply). Ids are stable: never reuse or renumber one.
#define DOJANG_WIRE_CALLS(X)                                                  \
  X(1, Hello, HelloRequest, HelloReply)                                       \
  X(2, GetSlotList, GetSlotListRequest, GetSlotListReply)                     \
  X(3, GetSlotInfo, SlotRequest, GetSlotInfoReply)                            \
  X(4, GetTokenInfo, SlotRequest, GetTokenInfoReply)                          \
  X(5, GetMechanismList, SlotRequest, GetMechanismListReply)                  \
  X(6, WaitForSlotEvent, WaitForSlotEventRequest, WaitForSlotEventReply)      \
  X(10, OpenSession, OpenSessionRequest, OpenSessionReply)                    \
  X(11, CloseSession, SessionRequest, Empty)                                  \
  X(12, CloseAllSessions, SlotRequest, Empty)                                 \
  X(13, GetSessionInfo, SessionRequest, GetSessionInfoReply)                  \
  X(14, Login, LoginRequest, Empty)                                           \
  X(15, Logout, SessionRequest, Empty)                                        \
  X(16, InitPin, InitPinRequest, Empty)                                       \
  X(17, SetPin, SetPinRequest, Empty)                                         \
  X(20, FindObjects, FindObjectsRequest, FindObjectsReply)                    \
  X(21, GetAttributeValue, GetAttributeValueRequest, GetAttributeValueReply)  \
  X(22, SetAttributeValue, SetAttributeValueRequest, Empty)                   \
  X(23, CreateObject, CreateObjectRequest, ObjectReply)                       \
  X(24, DestroyObject, ObjectRequest, Empty)                                  \
  X(25, GetObjectSize, ObjectRequest, ObjectSizeReply)                        \
  X(26, CopyObject, CopyObjectRequest, ObjectReply)                           \
  X(30, GenerateKeyPair, GenerateKeyPairRequest, GenerateKeyPairReply)        \
  X(31, CheckOperation, CheckOperationRequest, Empty)                         \
  X(32, Sign, KeyOperationRequest, DataReply)                                 \
  X(33, Verify, VerifyRequest, Empty)                                         \
  X(34, Decrypt, KeyOperationRequest, DataReply)                              \
  X(35, Digest, DigestRequest, DataReply)                                     \
  X(36, GenerateRandom, GenerateRandomRequest, DataReply)                     \
  X(37, LoginContextSpecific, LoginRequest, Empty)                            \
  X(50, DaemonStatus, Empty, DaemonStatusReply)

enum class CallId : std::uint16_t {
#define DOJANG_WIRE_CALL_ID(id, name, request, reply) name = id,
  DOJANG_WIRE_CALLS(DOJANG_WIRE_CALL_ID)
#undef DOJANG_WIRE_CALL_ID
};

// The protocol version that introduced a call; a client never sends a call to a daemon that
// does not have it.
constexpr std::uint32_t protocolOfCall(CallId id) noexcept {
  return id == CallId::GetObjectSize || id == CallId::CopyObject ? 2 : 1;
}

// The request and reply types of one call, looked up by id at compile time.
template <CallId>
struct Call;
#define DOJANG_WIRE_CALL_TRAITS(id, name, request, reply) \
  template <>                                             \
  struct Call<CallId::name> {                             \
    using Request = request;                              \
    using Reply = reply;                                  \
    static constexpr const char* kName = #name;           \
  };
DOJANG_WIRE_CALLS(DOJANG_WIRE_CALL_TRAITS)
#undef DOJANG_WIRE_CALL_TRAITS

// Name of a call id for logs; "unknown" for ids outside the table.
const char* callName(std::uint16_t id) noexcept;

}  // namespace dojang::wire
