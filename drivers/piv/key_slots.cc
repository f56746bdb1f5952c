#include "drivers/piv/key_slots.h"

namespace dojang::piv {

namespace {

std::array<KeySlot, kKeySlotCount> makeSlots() {
  std::array<KeySlot, kKeySlotCount> slots{};
  slots[0] = {0x9A, 0x5FC105, 0x01, "PIV AUTH", "Certificate for PIV Authentication", false};
  slots[1] = {0x9C, 0x5FC10A, 0x02, "SIGN", "Certificate for Digital Signature", true};
  slots[2] = {0x9D, 0x5FC10B, 0x03, "KEY MGM", "Certificate for Key Management", false};
  slots[3] = {0x9E, 0x5FC101, 0x04, "CARD AUTH", "Certificate for Card Authentication", false};
  for (std::size_t retired = 0; retired < 20; ++retired) {
    const std::string number = std::to_string(retired + 1);
    slots[4 + retired] = {static_cast<std::uint8_t>(0x82 + retired), static_cast<std::uint32_t>(0x5FC10D + retired),
                          static_cast<std::uint8_t>(0x05 + retired), "RETIRED" + number,
                          "Certificate for Retired Key " + number, false};
  }
  return slots;
}

}  // namespace

const std::array<KeySlot, kKeySlotCount>& keySlots() {
  static const auto slots = makeSlots();
  return slots;
}

const std::array<std::size_t, kKeySlotCount>& generationOrder() {
  static const auto order = [] {
    std::array<std::size_t, kKeySlotCount> indices{};
    indices[0] = 0;  // 9A
    for (std::size_t retired = 0; retired < 20; ++retired) {
      indices[1 + retired] = 4 + retired;
    }
    indices[21] = 2;  // 9D
    indices[22] = 1;  // 9C
    indices[23] = 3;  // 9E
    return indices;
  }();
  return order;
}

std::optional<std::size_t> retiredNumber(const KeySlot& slot) {
  if (slot.keyReference >= 0x82 && slot.keyReference <= 0x95) {
    return static_cast<std::size_t>(slot.keyReference - 0x82);
  }
  return std::nullopt;
}

const KeySlot* slotForObjectId(std::span<const std::uint8_t> ckaId) {
  if (ckaId.size() != 1) {
    return nullptr;
  }
  for (const KeySlot& slot : keySlots()) {
    if (slot.objectId == ckaId[0] || slot.keyReference == ckaId[0]) {
      return &slot;
    }
  }
  return nullptr;
}

}  // namespace dojang::piv
