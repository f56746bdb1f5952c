// The test pinentry (tests/support/test-pinentry) as a test drives it: the answers it gives,
// in order, and what each prompt said. dojangd starts it as its [pin] program; the directory
// reaches it through DOJANG_TEST_PINENTRY_DIR in dojangd's environment.
#pragma once

#include <cstddef>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace dojang::test {

class TestPinentry final {
 public:
  // Creates `dir`; the program is $DOJANG_TEST_PINENTRY (set by meson for the tests that use it).
  explicit TestPinentry(std::filesystem::path dir);

  [[nodiscard]] static std::string program();
  // What dojangd's environment needs so that the test pinentry it starts finds its directory.
  [[nodiscard]] std::map<std::string, std::string> env() const;
  // The [pin] lines that make dojangd ask through it, after `settings` (e.g. "mode = \"prompt\"").
  [[nodiscard]] static std::string pinSettings(const std::string& settings);

  // One line per prompt: "pin:VALUE", "cancel", "hang", "sleep:S:then-pin:VALUE", ...
  void answers(const std::vector<std::string>& lines) const;
  // Each prompt as the JSON line the test pinentry recorded (every SET* text, argv, env, pid).
  [[nodiscard]] std::vector<std::string> prompts() const;
  // How many times a test pinentry was started.
  [[nodiscard]] std::size_t starts() const;

 private:
  std::filesystem::path m_dir;
};

}  // namespace dojang::test
