// Bytes as lowercase hex without separators: how CKA_IDs are shown, journalled and typed back.
#pragma once

#include <cstdint>
#include <span>
#include <string>

namespace dojang {

[[nodiscard]] inline std::string hexText(std::span<const std::uint8_t> bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string text;
  text.reserve(bytes.size() * 2);
  for (const auto byte : bytes) {
    text += kDigits[byte >> 4];
    text += kDigits[byte & 0x0f];
  }
  return text;
}

}  // namespace dojang
