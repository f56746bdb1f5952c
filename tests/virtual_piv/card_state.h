// Everything the virtual card remembers between insertions: PIN and PUK with their counters, the
// management key, the private keys in their slots and the data objects. Saved to a text file
// (atomically, after every change) so a test can pull the card and insert it again.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>

#include "tests/virtual_piv/tlv.h"

namespace dojang::virtual_piv {

// SP 800-73-4 Part 1 table 4 key references' PIN needs, with YubiKey's values for the AA tag of
// GENERATE ASYMMETRIC KEY PAIR (1 never, 2 once per verification, 3 before every operation).
enum class PinPolicy : std::uint8_t { Never = 1, Once = 2, Always = 3 };

struct CardKey {
  std::uint8_t algorithm = 0;  // SP 800-78-4 table 6-2: 0x06/0x07 RSA, 0x11 P-256, 0x14 P-384
  PinPolicy pinPolicy = PinPolicy::Once;
  Bytes privateKeyDer;  // PKCS#8; it never leaves the card process except into the state file
};

struct ReferenceData {
  Bytes value;  // padded with 0xFF to 8 bytes, as VERIFY carries it
  int triesLeft = 3;
  int maxTries = 3;
};

struct CardState {
  ReferenceData pin;
  ReferenceData puk;
  std::uint8_t managementAlgorithm = 0x03;
  Bytes managementKey;
  std::map<std::uint8_t, CardKey> keys;          // by key reference (0x9A, 0x9C, 0x82, ...)
  std::map<std::uint32_t, Bytes> objects;        // by tag (0x5FC105), the contents of tag 53

  // PIN 123456, PUK 12345678, three tries each, a CHUID with a random GUID.
  static CardState fresh(std::uint8_t managementAlgorithm, const Bytes& managementKey);
  // nullopt when the file is missing; throws std::runtime_error when it is unreadable.
  static std::optional<CardState> load(const std::filesystem::path& file);
  // Writes FILE.tmp and renames it over FILE; throws std::runtime_error on failure.
  void save(const std::filesystem::path& file) const;
};

// "123456" -> 31 32 33 34 35 36 FF FF.
Bytes padReferenceData(std::string_view text);
// The default PIN policy of a key reference (9C: always, 9E: never, others: once).
PinPolicy defaultPinPolicy(std::uint8_t keyReference);

}  // namespace dojang::virtual_piv
