// PKCS#11 text fields (labels, manufacturer IDs, descriptions, times) are fixed-width,
// blank-padded and not NUL-terminated. Read and written here only.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <string>
#include <string_view>

namespace dojang {

// The field's text without its trailing blanks (and without anything after a stray NUL).
[[nodiscard]] inline std::string paddedText(const unsigned char* field, std::size_t width) {
  std::size_t length = 0;
  while (length < width && field[length] != '\0') {
    ++length;
  }
  while (length > 0 && field[length - 1] == ' ') {
    --length;
  }
  return std::string(reinterpret_cast<const char*>(field), length);
}

template <std::size_t N>
[[nodiscard]] std::string paddedText(const unsigned char (&field)[N]) {
  return paddedText(field, N);
}

// Fills the field with `text`, cut at the field's width, and blanks after it.
inline void padText(unsigned char* field, std::size_t width, std::string_view text) noexcept {
  std::memset(field, ' ', width);
  std::memcpy(field, text.data(), std::min(width, text.size()));
}

template <std::size_t N>
void padText(unsigned char (&field)[N], std::string_view text) noexcept {
  padText(field, N, text);
}

}  // namespace dojang
