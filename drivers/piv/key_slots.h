// The PIV key slots and how PKCS#11 names them.
//
// CKA_ID <-> PIV key reference, as OpenSC and ykcs11 number them, so that all three agree on a
// card's objects:
//   01 -> 9A PIV Authentication        02 -> 9C Digital Signature
//   03 -> 9D Key Management            04 -> 9E Card Authentication
//   05..18 -> 82..95 Retired Key Management 1..20
// A one-byte CKA_ID that is a key reference itself (9A, 9C, 9D, 9E, 82..95) is accepted too, so
// a template may name the slot the way yubico-piv-tool does.
// Certificates live in the data objects of SP 800-73-4 Part 1, Table 3 (5FC105 for 9A, 5FC10A
// for 9C, 5FC10B for 9D, 5FC101 for 9E, 5FC10D..5FC120 for 82..95).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

namespace dojang::piv {

struct KeySlot {
  std::uint8_t keyReference = 0;
  std::uint32_t certificateTag = 0;
  std::uint8_t objectId = 0;  // the CKA_ID byte
  std::string name;           // "PIV AUTH"
  std::string certificateLabel;
  bool alwaysAuthenticate = false;  // 9C: the PIN right before every signature (Part 1, 3.1)
};

inline constexpr std::size_t kKeySlotCount = 24;
// 9A, 9C, 9D, 9E, then 82..95.
[[nodiscard]] const std::array<KeySlot, kKeySlotCount>& keySlots();
// Where key generation looks for a free slot when the template names none (no CKA_ID, or an
// application's own CKA_ID), as indices into keySlots(): 9A, then the retired slots 82..95, then
// 9D, 9C and 9E. A first key lands in 9A; a renewal, whose old key still holds 9A, in the first
// free retired slot, and the renewal after it back in 9A once the old pair was deleted. 9D, 9C
// and 9E come last for what their roles do to a general-purpose key: OpenSC offers 9D for
// decryption only, 9C asks for the PIN before every signature, and 9E signs without a PIN.
[[nodiscard]] const std::array<std::size_t, kKeySlotCount>& generationOrder();
// Whether the slot is one of the retired ones (82..95), and which (0 for 82).
[[nodiscard]] std::optional<std::size_t> retiredNumber(const KeySlot& slot);
// The slot a CKA_ID names, or nullptr.
[[nodiscard]] const KeySlot* slotForObjectId(std::span<const std::uint8_t> ckaId);

}  // namespace dojang::piv
