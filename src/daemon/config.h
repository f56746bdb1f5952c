// dojangd's configuration: $XDG_CONFIG_HOME/dojang/dojangd.toml (or --config).
//
//   [daemon]
//   poll_interval_ms = 1000      # how often slots are rescanned when a driver cannot wait
//
//   [[backend]]
//   name = "softhsm"
//   module = "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"
//
// Without a file (or without backends) OpenSC's module is used when it is installed.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace dojang::daemon {

struct BackendConfig {
  std::string name;
  std::string modulePath;
};

struct Config {
  std::vector<BackendConfig> backends;
  std::chrono::milliseconds pollInterval{1000};
  std::string source;  // the file read, or "built-in defaults"
};

[[nodiscard]] std::string defaultConfigPath();
// Reads the file if it exists; a file that exists but does not parse is an error.
[[nodiscard]] Config loadConfig(const std::optional<std::string>& path);
// Parses TOML text (exposed for tests).
[[nodiscard]] Config parseConfig(const std::string& text, const std::string& source);

}  // namespace dojang::daemon
