#include "tests/support/test_pinentry.h"

#include <cstdlib>
#include <fstream>
#include <stdexcept>

#include "tests/support/temp_dir.h"

namespace dojang::test {

namespace {
std::vector<std::string> nonEmptyLines(const std::filesystem::path& file) {
  std::vector<std::string> lines;
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) {
      lines.push_back(line);
    }
  }
  return lines;
}
}  // namespace

TestPinentry::TestPinentry(std::filesystem::path dir) : m_dir(std::move(dir)) {
  std::filesystem::create_directories(m_dir);
}

std::string TestPinentry::program() {
  const char* path = std::getenv("DOJANG_TEST_PINENTRY");
  if (path == nullptr || *path == 0) {
    throw std::runtime_error("DOJANG_TEST_PINENTRY is not set");
  }
  return path;
}

std::map<std::string, std::string> TestPinentry::env() const {
  return {{"DOJANG_TEST_PINENTRY_DIR", m_dir.string()}};
}

std::string TestPinentry::pinSettings(const std::string& settings) {
  return settings + "\nprogram = \"" + program() + "\"\n";
}

void TestPinentry::answers(const std::vector<std::string>& lines) const {
  std::string text;
  for (const auto& line : lines) {
    text += line + "\n";
  }
  writeFile(m_dir / "answers", text);
  std::filesystem::remove(m_dir / "answers.next");
}

std::vector<std::string> TestPinentry::prompts() const {
  return nonEmptyLines(m_dir / "prompts.jsonl");
}

std::size_t TestPinentry::starts() const {
  return nonEmptyLines(m_dir / "starts.log").size();
}

}  // namespace dojang::test
