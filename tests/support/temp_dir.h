// A private temporary directory that is removed, with everything in it, when the owner dies.
#pragma once

#include <filesystem>
#include <string>

namespace dojang::test {

class TempDir final {
 public:
  // Creates $TMPDIR/<prefix>XXXXXX (or /tmp/...) with mode 0700.
  explicit TempDir(const std::string& prefix = "dojang-test-");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  TempDir(TempDir&& other) noexcept;
  TempDir& operator=(TempDir&& other) noexcept;

  [[nodiscard]] const std::filesystem::path& path() const noexcept { return m_path; }
  // path() / relative
  [[nodiscard]] std::filesystem::path operator/(const std::filesystem::path& relative) const {
    return m_path / relative;
  }

 private:
  void remove() noexcept;
  std::filesystem::path m_path;
};

// Writes `contents` to `file`, creating or truncating it; throws std::runtime_error on failure.
void writeFile(const std::filesystem::path& file, const std::string& contents);
// Reads the whole file; throws std::runtime_error on failure.
std::string readFile(const std::filesystem::path& file);

}  // namespace dojang::test
