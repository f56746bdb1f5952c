// dojangd's configuration: $XDG_CONFIG_HOME/dojang/dojangd.toml (or --config).
//
//   [daemon]
//   poll_interval_ms = 1000      # how often slots are rescanned when a driver cannot wait
//   max_connections = 256        # connections at once; more are refused with CKR_DEVICE_MEMORY
//   max_connections_per_process = 64
//   hello_timeout_ms = 5000      # a connection that sends no Hello this long is closed
//
//   [[backend]]
//   name = "softhsm"
//   module = "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"
//
// Without a file (or without backends) OpenSC's module is used when it is installed.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

namespace dojang::daemon {

struct BackendConfig {
  std::string name;
  std::string modulePath;
};

// What the server lets connections take; each connection costs a thread and a descriptor.
struct ConnectionLimits {
  std::size_t maxConnections = 256;
  std::size_t maxConnectionsPerProcess = 64;  // so one runaway process cannot take them all
  std::chrono::milliseconds helloTimeout{5000};
};

struct Config {
  std::vector<BackendConfig> backends;
  std::chrono::milliseconds pollInterval{1000};
  ConnectionLimits connections;
  std::string source;  // the file read, or "built-in defaults"
};

[[nodiscard]] std::string defaultConfigPath();
// Reads the file if it exists; a file that exists but does not parse is an error.
[[nodiscard]] Config loadConfig(const std::optional<std::string>& path);
// Parses TOML text (exposed for tests).
[[nodiscard]] Config parseConfig(const std::string& text, const std::string& source);

}  // namespace dojang::daemon
