#include "tests/virtual_piv/tlv.h"

namespace dojang::virtual_piv {
namespace {

constexpr char kDigits[] = "0123456789abcdef";
constexpr char kUpperDigits[] = "0123456789ABCDEF";

int hexValue(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}

void appendLength(Bytes& out, std::size_t length) {
  if (length < 0x80) {
    out.push_back(static_cast<std::uint8_t>(length));
  } else if (length <= 0xFF) {
    out.push_back(0x81);
    out.push_back(static_cast<std::uint8_t>(length));
  } else if (length <= 0xFFFF) {
    out.push_back(0x82);
    out.push_back(static_cast<std::uint8_t>(length >> 8));
    out.push_back(static_cast<std::uint8_t>(length));
  } else {
    out.push_back(0x83);
    out.push_back(static_cast<std::uint8_t>(length >> 16));
    out.push_back(static_cast<std::uint8_t>(length >> 8));
    out.push_back(static_cast<std::uint8_t>(length));
  }
}

}  // namespace

std::string spacedHex(std::span<const std::uint8_t> bytes) {
  std::string text;
  for (const auto byte : bytes) {
    if (!text.empty()) {
      text.push_back(' ');
    }
    text.push_back(kUpperDigits[byte >> 4]);
    text.push_back(kUpperDigits[byte & 0x0F]);
  }
  return text;
}

std::string hexText(std::span<const std::uint8_t> bytes) {
  std::string text;
  text.reserve(bytes.size() * 2);
  for (const auto byte : bytes) {
    text.push_back(kDigits[byte >> 4]);
    text.push_back(kDigits[byte & 0x0F]);
  }
  return text;
}

std::optional<Bytes> parseHex(std::string_view text) {
  if (text.size() % 2 != 0) {
    return std::nullopt;
  }
  Bytes bytes;
  bytes.reserve(text.size() / 2);
  for (std::size_t i = 0; i < text.size(); i += 2) {
    const int high = hexValue(text[i]);
    const int low = hexValue(text[i + 1]);
    if (high < 0 || low < 0) {
      return std::nullopt;
    }
    bytes.push_back(static_cast<std::uint8_t>(high * 16 + low));
  }
  return bytes;
}

void appendTlv(Bytes& out, std::uint32_t tag, std::span<const std::uint8_t> value) {
  if (tag > 0xFFFF) {
    out.push_back(static_cast<std::uint8_t>(tag >> 16));
  }
  if (tag > 0xFF) {
    out.push_back(static_cast<std::uint8_t>(tag >> 8));
  }
  out.push_back(static_cast<std::uint8_t>(tag));
  appendLength(out, value.size());
  out.insert(out.end(), value.begin(), value.end());
}

Bytes tlv(std::uint32_t tag, std::span<const std::uint8_t> value) {
  Bytes out;
  appendTlv(out, tag, value);
  return out;
}

std::optional<std::vector<TlvItem>> parseTlvs(std::span<const std::uint8_t> bytes) {
  std::vector<TlvItem> items;
  std::size_t at = 0;
  while (at < bytes.size()) {
    TlvItem item;
    item.tag = bytes[at++];
    // Multi-byte tag: low five bits all set, then bytes with b8 set continue it (ISO 7816-4 5.2.2.1).
    if ((item.tag & 0x1F) == 0x1F) {
      do {
        if (at >= bytes.size() || item.tag > 0xFFFF) {
          return std::nullopt;
        }
        item.tag = (item.tag << 8) | bytes[at];
      } while ((bytes[at++] & 0x80) != 0);
    }
    if (at >= bytes.size()) {
      return std::nullopt;
    }
    std::size_t length = bytes[at++];
    if (length > 0x80) {
      const std::size_t lengthBytes = length & 0x7F;
      if (lengthBytes > 3 || bytes.size() - at < lengthBytes) {
        return std::nullopt;
      }
      length = 0;
      for (std::size_t i = 0; i < lengthBytes; ++i) {
        length = (length << 8) | bytes[at++];
      }
    } else if (length == 0x80) {
      return std::nullopt;  // indefinite lengths are not BER-TLV as PIV uses it
    }
    if (bytes.size() - at < length) {
      return std::nullopt;
    }
    item.value.assign(bytes.begin() + static_cast<std::ptrdiff_t>(at),
                      bytes.begin() + static_cast<std::ptrdiff_t>(at + length));
    at += length;
    items.push_back(std::move(item));
  }
  return items;
}

const TlvItem* findTlv(const std::vector<TlvItem>& items, std::uint32_t tag) {
  for (const auto& item : items) {
    if (item.tag == tag) {
      return &item;
    }
  }
  return nullptr;
}

}  // namespace dojang::virtual_piv
