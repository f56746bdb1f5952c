#include "drivers/piv/ber_tlv.h"

#include "src/common/errors/error.h"

namespace dojang::piv {

std::vector<Tlv> parseTlvs(std::span<const std::uint8_t> data) {
  std::vector<Tlv> out;
  std::size_t at = 0;
  const auto need = [&](std::size_t count) {
    if (data.size() - at < count) {
      fail(CKR_DEVICE_ERROR, "truncated BER-TLV from the card");
    }
  };
  while (at < data.size()) {
    if (data[at] == 0x00 || data[at] == 0xFF) {
      ++at;
      continue;
    }
    std::uint32_t tag = data[at++];
    if ((tag & 0x1F) == 0x1F) {  // more tag bytes follow while bit 8 is set
      int extra = 0;
      do {
        need(1);
        if (++extra > 2) {
          fail(CKR_DEVICE_ERROR, "BER-TLV tag longer than three bytes");
        }
        tag = (tag << 8) | data[at];
      } while ((data[at++] & 0x80) != 0);
    }
    need(1);
    std::size_t length = data[at++];
    if (length == 0x80 || length > 0x83) {
      fail(CKR_DEVICE_ERROR, "BER-TLV length form not allowed in PIV");
    }
    if (length > 0x80) {
      const std::size_t bytes = length - 0x80;
      need(bytes);
      length = 0;
      for (std::size_t i = 0; i < bytes; ++i) {
        length = (length << 8) | data[at++];
      }
    }
    need(length);
    out.push_back({tag, data.subspan(at, length)});
    at += length;
  }
  return out;
}

std::optional<std::span<const std::uint8_t>> findTlv(std::span<const std::uint8_t> data, std::uint32_t tag) {
  for (const Tlv& tlv : parseTlvs(data)) {
    if (tlv.tag == tag) {
      return tlv.value;
    }
  }
  return std::nullopt;
}

void appendTlv(Bytes& out, std::uint32_t tag, std::span<const std::uint8_t> value) {
  if (tag > 0xFFFF) {
    out.push_back(static_cast<std::uint8_t>(tag >> 16));
  }
  if (tag > 0xFF) {
    out.push_back(static_cast<std::uint8_t>(tag >> 8));
  }
  out.push_back(static_cast<std::uint8_t>(tag));
  const std::size_t length = value.size();
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
  out.insert(out.end(), value.begin(), value.end());
}

Bytes encodeTlv(std::uint32_t tag, std::span<const std::uint8_t> value) {
  Bytes out;
  appendTlv(out, tag, value);
  return out;
}

}  // namespace dojang::piv
