#include "src/daemon/pinentry/assuan_text.h"

namespace dojang::daemon::pinentry {

namespace {

bool needsEscape(unsigned char byte) {
  return byte == '%' || byte < 0x20 || byte == 0x7f;
}

// Bytes of the UTF-8 sequence that `lead` starts (1 for ASCII and for stray continuation bytes).
std::size_t sequenceLength(unsigned char lead) {
  if (lead >= 0xf0 && lead < 0xf8) {
    return 4;
  }
  if (lead >= 0xe0) {
    return lead < 0xf0 ? 3 : 1;
  }
  return lead >= 0xc0 ? 2 : 1;
}

}  // namespace

std::string percentEscape(std::string_view text, std::size_t limit) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string escaped;
  escaped.reserve(text.size() < limit ? text.size() : limit);
  for (std::size_t at = 0; at < text.size();) {
    const auto lead = static_cast<unsigned char>(text[at]);
    if (needsEscape(lead)) {
      if (escaped.size() + 3 > limit) {
        break;
      }
      escaped += '%';
      escaped += kHex[lead >> 4];
      escaped += kHex[lead & 0x0f];
      ++at;
      continue;
    }
    std::size_t length = sequenceLength(lead);
    if (at + length > text.size()) {
      length = text.size() - at;
    }
    if (escaped.size() + length > limit) {
      break;
    }
    escaped.append(text.substr(at, length));
    at += length;
  }
  return escaped;
}

std::string assuanCommand(std::string_view command, std::string_view text) {
  std::string line(command);
  if (line.size() + 1 >= kAssuanMaxLine) {
    return line;
  }
  line += ' ';
  line += percentEscape(text, kAssuanMaxLine - line.size());
  return line;
}

}  // namespace dojang::daemon::pinentry
