// A fresh SoftHSM 2 token for one test: a private token directory and softhsm2.conf, SOFTHSM2_CONF
// pointing at it for this process (restored afterwards), and one initialised token. Create it
// before loading libsofthsm2.so, which reads SOFTHSM2_CONF in C_Initialize.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "tests/support/temp_dir.h"

namespace dojang::test {

struct SoftHsmOptions {
  std::string label = "dojang-test";
  std::string pin = "123456";
  std::string soPin = "12345678";
};

class SoftHsmToken final {
 public:
  static constexpr const char* kModulePath = "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so";

  // Throws std::runtime_error when softhsm2-util fails.
  explicit SoftHsmToken(SoftHsmOptions options = {});
  ~SoftHsmToken();
  SoftHsmToken(const SoftHsmToken&) = delete;
  SoftHsmToken& operator=(const SoftHsmToken&) = delete;
  SoftHsmToken(SoftHsmToken&&) = delete;
  SoftHsmToken& operator=(SoftHsmToken&&) = delete;

  // Initialises one more token in the same token directory; returns its slot ID if reported.
  std::optional<unsigned long> addToken(const std::string& label, const std::string& pin,
                                        const std::string& soPin);

  [[nodiscard]] const std::string& label() const noexcept { return m_options.label; }
  [[nodiscard]] const std::string& pin() const noexcept { return m_options.pin; }
  [[nodiscard]] const std::string& soPin() const noexcept { return m_options.soPin; }
  // The slot ID softhsm2-util reassigned the token to (SoftHSM picks it at random).
  [[nodiscard]] std::optional<unsigned long> slotId() const noexcept { return m_slotId; }
  [[nodiscard]] const std::filesystem::path& directory() const noexcept { return m_dir.path(); }
  [[nodiscard]] std::filesystem::path configPath() const { return m_dir / "softhsm2.conf"; }
  [[nodiscard]] std::string modulePath() const { return kModulePath; }

 private:
  SoftHsmOptions m_options;
  TempDir m_dir;
  std::optional<std::string> m_previousConf;
  std::optional<unsigned long> m_slotId;
};

}  // namespace dojang::test
