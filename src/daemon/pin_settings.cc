#include "src/daemon/pin_settings.h"

#include <fnmatch.h>

namespace dojang::daemon {

namespace {
bool globMatches(const std::string& pattern, const std::string& text) {
  return pattern.empty() || ::fnmatch(pattern.c_str(), text.c_str(), 0) == 0;
}
}  // namespace

PinMode PinSettings::modeFor(const std::string& label, const std::string& serial) const {
  for (const auto& rule : tokens) {
    if (globMatches(rule.label, label) && globMatches(rule.serial, serial)) {
      return rule.mode;
    }
  }
  return defaultMode;
}

const char* pinModeName(PinMode mode) noexcept {
  return mode == PinMode::Prompt ? "prompt" : "application";
}

}  // namespace dojang::daemon
