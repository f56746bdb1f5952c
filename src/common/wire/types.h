// Value types carried on the dojang wire between dojang-pkcs11.so and dojangd.
// Plain data only: the module links nothing heavy, so neither may this header.
#pragma once

#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

namespace dojang::wire {

using Bytes = std::vector<std::uint8_t>;

// Lets the codec walk a struct's members in declaration order.
#define DOJANG_WIRE_FIELDS(...)                               \
  auto fields() { return std::tie(__VA_ARGS__); }             \
  auto fields() const { return std::tie(__VA_ARGS__); }

struct Empty {
  auto fields() { return std::tie(); }
  auto fields() const { return std::tie(); }
};

// One attribute with a value (templates for find, create, set, generate).
struct Attribute {
  std::uint64_t type = 0;
  Bytes value;
  DOJANG_WIRE_FIELDS(type, value)
};

// One attribute as read from a token. status is CKR_OK or the per-attribute failure
// (CKR_ATTRIBUTE_SENSITIVE, CKR_ATTRIBUTE_TYPE_INVALID); the module applies the caller's
// buffer sizes itself, so a size query and the read that follows cost one round trip.
struct AttributeResult {
  std::uint64_t type = 0;
  std::uint64_t status = 0;
  Bytes value;
  DOJANG_WIRE_FIELDS(type, status, value)
};

// Mechanism parameters are carried by meaning, not as raw C structs, because the
// structs hold pointers (OAEP's source data).
enum class MechanismParams : std::uint8_t { None = 0, Pss = 1, Oaep = 2, Raw = 3 };

struct Mechanism {
  std::uint64_t type = 0;
  MechanismParams paramsKind = MechanismParams::None;
  std::uint64_t hashAlg = 0;     // PSS, OAEP
  std::uint64_t mgf = 0;         // PSS, OAEP
  std::uint64_t saltOrSource = 0;  // PSS: salt length; OAEP: source type
  Bytes data;                    // OAEP: source data; Raw: the parameter bytes
  DOJANG_WIRE_FIELDS(type, paramsKind, hashAlg, mgf, saltOrSource, data)
};

struct MechanismInfo {
  std::uint64_t type = 0;
  std::uint64_t minKeySize = 0;
  std::uint64_t maxKeySize = 0;
  std::uint64_t flags = 0;
  DOJANG_WIRE_FIELDS(type, minKeySize, maxKeySize, flags)
};

struct Version {
  std::uint8_t major = 0;
  std::uint8_t minor = 0;
  DOJANG_WIRE_FIELDS(major, minor)
};

struct SlotInfo {
  std::string description;
  std::string manufacturer;
  std::uint64_t flags = 0;
  Version hardwareVersion;
  Version firmwareVersion;
  DOJANG_WIRE_FIELDS(description, manufacturer, flags, hardwareVersion, firmwareVersion)
};

struct TokenInfo {
  std::string label;
  std::string manufacturer;
  std::string model;
  std::string serialNumber;
  std::uint64_t flags = 0;
  std::uint64_t maxSessionCount = 0;
  std::uint64_t sessionCount = 0;
  std::uint64_t maxRwSessionCount = 0;
  std::uint64_t rwSessionCount = 0;
  std::uint64_t maxPinLen = 0;
  std::uint64_t minPinLen = 0;
  std::uint64_t totalPublicMemory = 0;
  std::uint64_t freePublicMemory = 0;
  std::uint64_t totalPrivateMemory = 0;
  std::uint64_t freePrivateMemory = 0;
  Version hardwareVersion;
  Version firmwareVersion;
  std::string utcTime;
  DOJANG_WIRE_FIELDS(label, manufacturer, model, serialNumber, flags, maxSessionCount, sessionCount,
                     maxRwSessionCount, rwSessionCount, maxPinLen, minPinLen, totalPublicMemory,
                     freePublicMemory, totalPrivateMemory, freePrivateMemory, hardwareVersion,
                     firmwareVersion, utcTime)
};

struct SessionInfo {
  std::uint64_t slot = 0;
  std::uint64_t state = 0;
  std::uint64_t flags = 0;
  std::uint64_t deviceError = 0;
  DOJANG_WIRE_FIELDS(slot, state, flags, deviceError)
};

struct BackendStatus {
  std::string name;
  std::string path;
  std::string state;  // "loaded" or the reason it is not
  DOJANG_WIRE_FIELDS(name, path, state)
};

struct SlotStatus {
  std::uint64_t slot = 0;
  std::string backend;  // the backend's configured name
  bool tokenPresent = false;
  std::string tokenLabel;
  std::uint32_t loggedInClients = 0;
  std::uint32_t cachedObjects = 0;
  std::string state;    // "present", "empty", "not initialised" or "unusable"
  std::string problem;  // why a token in the slot cannot be used ("" when it can)
  // The exact tries left of the user PIN and of the SO PIN (PUK) when the token tells, else -1
  // (SoftHSM, most vendor modules: CK_TOKEN_INFO has only the count-low, final-try and locked
  // flags). For `dojang pin status`.
  std::int32_t userPinRetriesLeft = -1;
  std::int32_t soPinRetriesLeft = -1;
  DOJANG_WIRE_FIELDS(slot, backend, tokenPresent, tokenLabel, loggedInClients, cachedObjects, state, problem,
                     userPinRetriesLeft, soPinRetriesLeft)
};

}  // namespace dojang::wire
