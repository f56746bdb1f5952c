// PKCS#11 reports names as fixed-size, blank-padded, unterminated UTF-8 fields.
#pragma once

#include <cstddef>
#include <string>

namespace dojang::vendor {

// The field's text without its trailing blanks (and without anything after a stray NUL).
template <std::size_t N>
std::string paddedText(const unsigned char (&field)[N]) {
  std::size_t length = 0;
  while (length < N && field[length] != '\0') {
    ++length;
  }
  while (length > 0 && field[length - 1] == ' ') {
    --length;
  }
  return std::string(reinterpret_cast<const char*>(field), length);
}

}  // namespace dojang::vendor
