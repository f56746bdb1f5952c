#include "tests/support/softhsm_token.h"

#include <cstdlib>
#include <regex>
#include <stdexcept>

#include "tests/support/run_command.h"

namespace dojang::test {

SoftHsmToken::SoftHsmToken(SoftHsmOptions options) : m_options(std::move(options)), m_dir("dojang-softhsm-") {
  std::filesystem::create_directory(m_dir / "tokens");
  writeFile(configPath(), "directories.tokendir = " + (m_dir / "tokens").string() +
                              "\n"
                              "objectstore.backend = file\n"
                              "log.level = ERROR\n"
                              "slots.removable = false\n");
  if (const char* previous = std::getenv("SOFTHSM2_CONF"); previous != nullptr) {
    m_previousConf = previous;
  }
  ::setenv("SOFTHSM2_CONF", configPath().c_str(), 1);
  try {
    m_slotId = addToken(m_options.label, m_options.pin, m_options.soPin);
  } catch (...) {
    if (m_previousConf) {
      ::setenv("SOFTHSM2_CONF", m_previousConf->c_str(), 1);
    } else {
      ::unsetenv("SOFTHSM2_CONF");
    }
    throw;
  }
}

SoftHsmToken::~SoftHsmToken() {
  if (m_previousConf) {
    ::setenv("SOFTHSM2_CONF", m_previousConf->c_str(), 1);
  } else {
    ::unsetenv("SOFTHSM2_CONF");
  }
}

std::optional<unsigned long> SoftHsmToken::addToken(const std::string& label, const std::string& pin,
                                                    const std::string& soPin) {
  const CommandResult result =
      runCommand({"softhsm2-util", "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", soPin},
                 {{"SOFTHSM2_CONF", configPath().string()}});
  if (result.exitCode != 0) {
    throw std::runtime_error("softhsm2-util --init-token failed (" + std::to_string(result.exitCode) +
                             "): " + result.out + result.err);
  }
  // "The token has been initialized and is reassigned to slot 1234567"
  static const std::regex reassigned("reassigned to slot ([0-9]+)");
  std::smatch match;
  if (std::regex_search(result.out, match, reassigned)) {
    return std::stoul(match[1].str());
  }
  return std::nullopt;
}

}  // namespace dojang::test
