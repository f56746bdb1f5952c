// The daemon's view of a token, whatever lies underneath: a vendor PKCS#11 module, a native PIV
// card over PC/SC, or anything else. The vocabulary is PKCS#11's (attribute types, mechanism
// types, CK_RV codes inside dojang::Error), because that is what clients speak; the shape is not:
// there are no function lists, slot IDs or backend session handles here.
//
// Threading: a Driver and a Token may be called from several threads; a TokenSession is used by
// one thread at a time (the daemon serialises each client session).
//
// The contract a card driver keeps (PC/SC cards: PIV, Korean tokens, ...):
// - One card transaction per operation. Every call of Token and TokenSession that talks to the
//   card runs inside one SCardBeginTransaction/SCardEndTransaction, so that another program
//   cannot slip its APDUs between the ones of a sign or a login.
// - Serialisation per card is the driver's job: calls on sessions of the same card may arrive
//   from several daemon threads at once, and the driver queues them on the card. The daemon
//   does not lock a token around calls (it would hold up calls that never reach the card).
// - Failures say what happened, as dojang::Error kinds: TokenRemoved when the card or reader is
//   gone (CKR_DEVICE_REMOVED or CKR_TOKEN_NOT_PRESENT; the daemon marks the token removed at
//   once and rescans the driver), LoginLost when the card is still there but its login is gone
//   (SCARD_W_RESET_CARD: another program reset it; the daemon forgets the token's login), and
//   PinIncorrect with Error::pinRetriesLeft() when the card tells how many tries are left.
// - No hidden state between calls: a context-specific PIN and a key-generation credential come
//   with the operation that needs them.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "drivers/token/secure_bytes.h"
#include "src/common/cryptoki/cryptoki.h"
#include "src/common/cryptoki/operation_kind.h"
#include "src/common/errors/error.h"

namespace dojang::token {

using Bytes = std::vector<std::uint8_t>;
using ObjectId = std::uint64_t;  // stable for the token's lifetime in this process

struct AttributeValue {
  CK_ATTRIBUTE_TYPE type = 0;
  Bytes value;
};
using AttributeList = std::vector<AttributeValue>;

// One attribute read: the value, or why there is none.
struct AttributeRead {
  CK_ATTRIBUTE_TYPE type = 0;
  CK_RV status = CKR_OK;  // CKR_OK, CKR_ATTRIBUTE_SENSITIVE or CKR_ATTRIBUTE_TYPE_INVALID
  Bytes value;
};

struct MechanismParameters {
  enum class Kind : std::uint8_t { None, Pss, Oaep, Raw } kind = Kind::None;
  CK_MECHANISM_TYPE hashAlg = 0;
  CK_RSA_PKCS_MGF_TYPE mgf = 0;
  CK_ULONG saltLength = 0;  // PSS
  CK_ULONG sourceType = 0;  // OAEP
  Bytes data;               // OAEP source data, or raw parameter bytes
};
struct Mechanism {
  CK_MECHANISM_TYPE type = 0;
  MechanismParameters params;
};

struct MechanismEntry {
  CK_MECHANISM_TYPE type = 0;
  CK_MECHANISM_INFO info{};
};

// What the daemon shows in CK_TOKEN_INFO; counts of sessions are the daemon's own business.
struct TokenDescription {
  std::string label;
  std::string manufacturer;
  std::string model;
  std::string serialNumber;
  CK_FLAGS flags = 0;
  CK_ULONG maxPinLen = 0;
  CK_ULONG minPinLen = 0;
  CK_ULONG totalPublicMemory = CK_UNAVAILABLE_INFORMATION;
  CK_ULONG freePublicMemory = CK_UNAVAILABLE_INFORMATION;
  CK_ULONG totalPrivateMemory = CK_UNAVAILABLE_INFORMATION;
  CK_ULONG freePrivateMemory = CK_UNAVAILABLE_INFORMATION;
  CK_VERSION hardwareVersion{};
  CK_VERSION firmwareVersion{};
};

// What a token knows about one of its PINs. A token that cannot tell leaves the counts empty and
// the flags false.
struct PinState {
  std::optional<unsigned> retriesLeft;  // tries before the PIN locks
  std::optional<unsigned> maxRetries;   // tries after a right PIN
  bool locked = false;
  bool countLow = false;  // a wrong PIN was given since the last right one
  bool finalTry = false;  // one more wrong PIN locks it

  // The flags from exact counts, for drivers that know them.
  static PinState fromCounts(unsigned left, unsigned max) {
    return {left, max, left == 0, left < max, left == 1};
  }
};
struct PinStates {
  PinState user;
  PinState so;
};

struct KeyPair {
  ObjectId publicKey = 0;
  ObjectId privateKey = 0;  // 0 when the token returns only the public key (a PIV slot)
};

// Where a key pair goes and who may put it there. A vendor module decides both itself and
// ignores this; a PIV card generates into the key slot named by the CKA_ID (9a, 9c, 9d, 9e, ...)
// and is authorised by its management key rather than the PIN.
struct KeyGeneration {
  std::optional<Bytes> idHint;                   // CKA_ID of the private-key template, if any
  const SecureBytes* adminCredential = nullptr;  // e.g. a PIV management key; nullptr: the login
};

// C_Login(CKU_CONTEXT_SPECIFIC) for one operation on a CKA_ALWAYS_AUTHENTICATE key.
struct ContextLogin {
  bool given = false;                // the client logged in for this operation
  const SecureBytes* pin = nullptr;  // nullptr with `given`: the protected authentication path
};

// A context in which objects are used and operations run. Operations are single-shot: the
// daemon gathers multi-part input before it calls them.
class TokenSession {
 public:
  TokenSession() = default;
  TokenSession(const TokenSession&) = delete;
  TokenSession& operator=(const TokenSession&) = delete;
  virtual ~TokenSession() = default;

  virtual std::vector<ObjectId> findObjects(const AttributeList& templ) = 0;
  virtual std::vector<AttributeRead> readAttributes(ObjectId object,
                                                    std::span<const CK_ATTRIBUTE_TYPE> types) = 0;
  virtual void writeAttributes(ObjectId object, const AttributeList& templ) = 0;
  virtual ObjectId createObject(const AttributeList& templ) = 0;
  // C_CopyObject: a new object like `object`, with `templ` applied to the copy.
  virtual ObjectId copyObject(ObjectId object, const AttributeList& templ) = 0;
  virtual void destroyObject(ObjectId object) = 0;
  // C_GetObjectSize, as the token reports it (it may be CK_UNAVAILABLE_INFORMATION); throws
  // Error(CKR_INFORMATION_SENSITIVE) when the token will not tell.
  virtual CK_ULONG objectSize(ObjectId object) = 0;
  virtual KeyPair generateKeyPair(const Mechanism& mechanism, const AttributeList& publicTemplate,
                                  const AttributeList& privateTemplate, const KeyGeneration& target) = 0;

  // Checks what C_SignInit/C_VerifyInit/C_DecryptInit would check, without starting anything.
  // `kind` is Sign, Verify or Decrypt.
  virtual void checkKeyOperation(OperationKind kind, const Mechanism& mechanism, ObjectId key) = 0;
  // `context` carries the context-specific login a CKA_ALWAYS_AUTHENTICATE key needs; it is used
  // for this operation only.
  virtual Bytes sign(const Mechanism& mechanism, ObjectId key, std::span<const std::uint8_t> data,
                     const ContextLogin& context) = 0;
  // Throws Error(CKR_SIGNATURE_INVALID) for a bad signature.
  virtual void verify(const Mechanism& mechanism, ObjectId key, std::span<const std::uint8_t> data,
                      std::span<const std::uint8_t> signature) = 0;
  virtual Bytes decrypt(const Mechanism& mechanism, ObjectId key, std::span<const std::uint8_t> data,
                        const ContextLogin& context) = 0;
  virtual Bytes digest(const Mechanism& mechanism, std::span<const std::uint8_t> data) = 0;
  virtual Bytes generateRandom(std::size_t length) = 0;

  virtual void initPin(const SecureBytes& pin) = 0;
  virtual void setPin(const SecureBytes& oldPin, const SecureBytes& newPin) = 0;
};

// One token in one slot. Login state is token-wide, as on real hardware; the daemon keeps each
// client's own login state on top of it.
class Token {
 public:
  Token() = default;
  Token(const Token&) = delete;
  Token& operator=(const Token&) = delete;
  virtual ~Token() = default;

  virtual TokenDescription describe() = 0;
  // The PIN flags of CK_TOKEN_INFO come from it, and the daemon asks about once a second. A vendor
  // module reads it fresh; a card driver answers from what its own PIN commands last told it, so
  // that an idle card gets no APDUs (a wrong PIN typed in another program shows at the next check).
  virtual PinStates pinState() = 0;
  virtual std::vector<MechanismEntry> mechanisms() = 0;
  virtual std::unique_ptr<TokenSession> openSession() = 0;
  // pin == nullptr: the token's protected authentication path (PIN pad). A wrong PIN throws
  // ErrorKind::PinIncorrect, with pinRetriesLeft() when the token tells.
  virtual void login(CK_USER_TYPE user, const SecureBytes* pin) = 0;
  virtual void logout() = 0;
  // Checks an administrator credential the daemon asked for after an operation failed with
  // ErrorKind::CredentialNeeded (a PIV management key, as hex text), and keeps it for as long as
  // the token stays inserted. A wrong one throws ErrorKind::PinIncorrect. Tokens that never ask
  // for one keep this default.
  virtual void authorizeAdministrator(const SecureBytes& credential) {
    (void)credential;
    throw Error(CKR_FUNCTION_NOT_SUPPORTED, ErrorKind::Unsupported,
                "this token takes no administrator credential");
  }
};

// A reader slot as a driver sees it.
struct SlotDescription {
  std::string key;  // stable, unique within the driver (e.g. backend slot id, reader name)
  std::string description;
  std::string manufacturer;
  CK_FLAGS flags = 0;  // CKF_TOKEN_PRESENT, CKF_REMOVABLE_DEVICE, CKF_HW_SLOT
  CK_VERSION hardwareVersion{};
  CK_VERSION firmwareVersion{};
};

// A source of slots: a vendor module, a PC/SC reader family, ...
class Driver {
 public:
  Driver() = default;
  Driver(const Driver&) = delete;
  Driver& operator=(const Driver&) = delete;
  virtual ~Driver() = default;

  [[nodiscard]] virtual std::string name() const = 0;
  [[nodiscard]] virtual std::string location() const = 0;  // module path, reader pattern, ...
  // The slots that exist now, with CKF_TOKEN_PRESENT set where a token is in.
  virtual std::vector<SlotDescription> slots() = 0;
  // Opens the token in a slot; throws Error(CKR_TOKEN_NOT_PRESENT) when there is none.
  virtual std::unique_ptr<Token> openToken(const std::string& slotKey) = 0;
  // Blocks until a slot may have changed, or returns false at once when the driver cannot tell
  // (the daemon then polls slots()). cancel() makes a blocked call return false.
  virtual bool waitForChange() = 0;
  virtual void cancelWait() = 0;
};

}  // namespace dojang::token
