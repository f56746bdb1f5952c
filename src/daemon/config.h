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
//   [piv]                        # the native PIV driver over PC/SC (drivers/piv/piv_settings.h)
//   enabled = true
//   readers = ["*"]              # glob patterns on reader names
//   [[piv.card]]                 # a card's management key: by serial or reader
//   serial = "12345678"
//   management_key_file = "/home/me/.config/dojang/piv.key"
//   management_key_algorithm = "aes192"   # optional: 3des, aes128, aes192, aes256
//
//   [pin]                        # how PINs are asked (src/daemon/pin_settings.h)
//   mode = "prompt"              # dojangd asks through pinentry; "application": C_Login as usual
//   program = "pinentry"         # the pinentry program (pinentry-gnome3, pinentry-curses, ...)
//   cache = "connection"         # "off": every use asks; "timed": cache_seconds for every client
//   cache_seconds = 300
//   timeout_seconds = 60         # an unanswered prompt is cancelled after this
//   display = ":0"               # where to ask when the client shows no display or terminal
//   tty = "/dev/tty2"
//   [[pin.token]]                # per token, by label or serial glob; the first match decides
//   label = "Build server*"
//   mode = "application"
//
//   [renewal]                    # the renewal scheduler (src/daemon/scheduler, docs/renewal.md)
//   check_interval_seconds = 14400
//   notify_days = [30, 7, 3, 1]
//   pin_file = "/home/me/.config/dojang/pin"   # mode 0600; needed for automatic renewals
//   dojang_cli = "/usr/bin/dojang"             # default: beside dojangd, then the build tree
//   retry_initial_seconds = 300                # CA unreachable: first retry, doubling each time
//   retry_max_seconds = 21600
//   [[renewal.auto]]                           # automatic renewal is opt-in, per certificate
//   certificate = "LABEL"                      # or: profile = "signkorea-securities"
//   max_fee_krw = 0                            # renewed only when the CA's fee is at most this
//
// Without a file (or without backends) OpenSC's module is used when it is installed.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "drivers/piv/piv_settings.h"
#include "src/daemon/pin_settings.h"

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

// One [[renewal.auto]] entry: exactly one of certificate (a label) and profile (an id) is set.
struct AutoRenewal {
  std::string certificate;
  std::string profile;
  long long maxFeeKrw = 0;
  bool operator==(const AutoRenewal&) const = default;
};

struct RenewalSchedule {
  std::chrono::seconds checkInterval{4 * 3600};
  std::vector<int> notifyDays{30, 7, 3, 1};  // sorted, largest first
  std::optional<std::string> pinFile;
  std::optional<std::string> dojangCli;
  std::chrono::seconds retryInitial{300};
  std::chrono::seconds retryMax{6 * 3600};
  std::vector<AutoRenewal> automatic;
};

struct Config {
  std::vector<BackendConfig> backends;
  std::chrono::milliseconds pollInterval{1000};
  ConnectionLimits connections;
  RenewalSchedule renewal;
  piv::PivSettings piv;
  PinSettings pin;
  std::string source;  // the file read, or "built-in defaults"
};

[[nodiscard]] std::string defaultConfigPath();
// Reads the file if it exists; a file that exists but does not parse is an error.
[[nodiscard]] Config loadConfig(const std::optional<std::string>& path);
// Parses TOML text (exposed for tests).
[[nodiscard]] Config parseConfig(const std::string& text, const std::string& source);

}  // namespace dojang::daemon
