// Aligned text tables for people. Widths count terminal columns, so Hangul (two columns per
// syllable) lines up with ASCII.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace dojang::cli {

// Terminal columns a UTF-8 string takes: East Asian wide characters count 2, combining marks 0.
[[nodiscard]] std::size_t displayWidth(std::string_view utf8);

class Table final {
 public:
  explicit Table(std::vector<std::string> headers);
  void addRow(std::vector<std::string> cells);
  [[nodiscard]] bool empty() const noexcept { return m_rows.empty(); }
  // Header line, then one line per row; columns separated by two spaces, no trailing blanks.
  [[nodiscard]] std::string render() const;

 private:
  std::vector<std::string> m_headers;
  std::vector<std::vector<std::string>> m_rows;
};

}  // namespace dojang::cli
