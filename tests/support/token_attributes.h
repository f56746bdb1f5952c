// Building and reading token::AttributeList values in tests: PKCS#11 attributes are raw bytes in
// host layout (CK_BBOOL is one byte, CK_ULONG is native-endian).
#pragma once

#include <cstring>
#include <optional>
#include <string_view>

#include "drivers/token/token.h"

namespace dojang::test {

inline token::AttributeValue boolAttribute(CK_ATTRIBUTE_TYPE type, bool flag) {
  return {type, token::Bytes{static_cast<std::uint8_t>(flag ? CK_TRUE : CK_FALSE)}};
}

inline token::AttributeValue ulongAttribute(CK_ATTRIBUTE_TYPE type, CK_ULONG number) {
  token::Bytes bytes(sizeof number);
  std::memcpy(bytes.data(), &number, sizeof number);
  return {type, std::move(bytes)};
}

inline token::AttributeValue bytesAttribute(CK_ATTRIBUTE_TYPE type, std::span<const std::uint8_t> bytes) {
  return {type, token::Bytes(bytes.begin(), bytes.end())};
}

inline token::AttributeValue textAttribute(CK_ATTRIBUTE_TYPE type, std::string_view text) {
  return {type, token::Bytes(text.begin(), text.end())};
}

inline std::optional<bool> boolOf(const token::AttributeRead& read) {
  if (read.status != CKR_OK || read.value.size() != 1) {
    return std::nullopt;
  }
  return read.value[0] != CK_FALSE;
}

inline std::optional<CK_ULONG> ulongOf(const token::AttributeRead& read) {
  if (read.status != CKR_OK || read.value.size() != sizeof(CK_ULONG)) {
    return std::nullopt;
  }
  CK_ULONG number = 0;
  std::memcpy(&number, read.value.data(), sizeof number);
  return number;
}

}  // namespace dojang::test
