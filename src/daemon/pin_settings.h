// How dojangd gets the PIN of each token: `[pin]` in dojangd.toml (config.h documents the keys).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace dojang::daemon {

// Prompt: dojangd asks through pinentry when a private operation needs the token, and the token
// does not ask applications to log in (CKF_LOGIN_REQUIRED clear, CKF_PROTECTED_AUTHENTICATION_PATH
// set; private keys are findable by their public attributes). Application: classic PKCS#11, the
// application calls C_Login with the PIN.
enum class PinMode : std::uint8_t { Prompt, Application };

// How long a PIN typed into a prompt keeps the token usable without another prompt.
enum class PinCache : std::uint8_t {
  Off,            // every private operation asks
  PerConnection,  // until the client process disconnects (closes its last connection)
  Timed,          // for cacheLifetime, for every client of the token
};

// One [[pin.token]] rule: the first rule whose label or serial glob matches a token decides.
struct PinTokenRule {
  std::string label;   // glob on CKA_LABEL of the token ("" matches any)
  std::string serial;  // glob on the serial number ("" matches any)
  PinMode mode = PinMode::Prompt;
};

struct PinSettings {
  PinMode defaultMode = PinMode::Prompt;
  std::vector<PinTokenRule> tokens;
  std::string program = "pinentry";
  PinCache cache = PinCache::PerConnection;
  std::chrono::seconds cacheLifetime{300};
  std::chrono::seconds timeout{60};
  // Where to ask when the requesting process shows neither a display nor a terminal.
  std::string display;
  std::string tty;

  [[nodiscard]] PinMode modeFor(const std::string& label, const std::string& serial) const;
};

[[nodiscard]] const char* pinModeName(PinMode mode) noexcept;

}  // namespace dojang::daemon
