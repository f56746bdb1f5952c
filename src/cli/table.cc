#include "src/cli/table.h"

#include <algorithm>
#include <cstdint>

namespace dojang::cli {

namespace {

bool isWide(std::uint32_t c) {
  return (c >= 0x1100 && c <= 0x115F) ||   // Hangul Jamo initial consonants
         (c >= 0x2E80 && c <= 0x303E) ||   // CJK radicals, punctuation
         (c >= 0x3041 && c <= 0x33FF) ||   // kana, Hangul compatibility Jamo, CJK symbols
         (c >= 0x3400 && c <= 0x4DBF) ||   // CJK extension A
         (c >= 0x4E00 && c <= 0x9FFF) ||   // CJK unified ideographs
         (c >= 0xA960 && c <= 0xA97F) ||   // Hangul Jamo extended A
         (c >= 0xAC00 && c <= 0xD7A3) ||   // Hangul syllables
         (c >= 0xF900 && c <= 0xFAFF) ||   // CJK compatibility ideographs
         (c >= 0xFE30 && c <= 0xFE4F) ||   // CJK compatibility forms
         (c >= 0xFF00 && c <= 0xFF60) ||   // fullwidth forms
         (c >= 0xFFE0 && c <= 0xFFE6) ||
         (c >= 0x1F300 && c <= 0x1F64F) ||  // emoji
         (c >= 0x20000 && c <= 0x3FFFD);    // CJK extensions B and beyond
}

bool isZeroWidth(std::uint32_t c) {
  return (c >= 0x0300 && c <= 0x036F) || (c >= 0x1160 && c <= 0x11FF) ||  // combining, Jamo vowels
         c == 0x200B || c == 0x200C || c == 0x200D || c == 0xFEFF;
}

}  // namespace

std::size_t displayWidth(std::string_view utf8) {
  std::size_t width = 0;
  std::size_t i = 0;
  while (i < utf8.size()) {
    const auto lead = static_cast<unsigned char>(utf8[i]);
    std::uint32_t code = lead;
    std::size_t length = 1;
    if (lead >= 0xF0 && lead < 0xF8) {
      code = lead & 0x07U;
      length = 4;
    } else if (lead >= 0xE0) {
      code = lead & 0x0FU;
      length = 3;
    } else if (lead >= 0xC0) {
      code = lead & 0x1FU;
      length = 2;
    }
    if (i + length > utf8.size()) {
      length = 1;  // truncated sequence: count the byte as one column
    } else {
      for (std::size_t k = 1; k < length; ++k) {
        code = (code << 6) | (static_cast<unsigned char>(utf8[i + k]) & 0x3FU);
      }
    }
    i += length;
    if (code < 0x20 || isZeroWidth(code)) {
      continue;
    }
    width += isWide(code) ? 2 : 1;
  }
  return width;
}

Table::Table(std::vector<std::string> headers) : m_headers(std::move(headers)) {}

void Table::addRow(std::vector<std::string> cells) {
  cells.resize(m_headers.size());
  m_rows.push_back(std::move(cells));
}

std::string Table::render() const {
  std::vector<std::size_t> widths(m_headers.size(), 0);
  auto measure = [&widths](const std::vector<std::string>& cells) {
    for (std::size_t i = 0; i < cells.size(); ++i) {
      widths[i] = std::max(widths[i], displayWidth(cells[i]));
    }
  };
  measure(m_headers);
  for (const auto& row : m_rows) {
    measure(row);
  }
  std::string out;
  auto line = [&](const std::vector<std::string>& cells) {
    std::string text;
    for (std::size_t i = 0; i < cells.size(); ++i) {
      if (i != 0) {
        text += "  ";
      }
      text += cells[i];
      if (i + 1 < cells.size()) {
        text.append(widths[i] - displayWidth(cells[i]), ' ');
      }
    }
    while (!text.empty() && text.back() == ' ') {
      text.pop_back();
    }
    out += text;
    out += '\n';
  };
  line(m_headers);
  for (const auto& row : m_rows) {
    line(row);
  }
  return out;
}

}  // namespace dojang::cli
