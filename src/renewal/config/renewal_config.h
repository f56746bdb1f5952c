// Where renewals go and how they are kept: renewal.toml ($XDG_CONFIG_HOME/dojang/renewal.toml).
// Each CA names its endpoint, protocol, trust anchors and the profile catalogue that says its fees,
// validity and support contacts; dojang-ca on 127.0.0.1:8829 is the default.
//
//   [renewal]
//   default_ca = "dojang-ca"
//   retire_days = 30            # the old pair is deleted this many days after a renewal
//
//   [ca.dojang-ca]
//   url = "http://127.0.0.1:8829/"
//   protocol = "cmp"            # the only one so far
//   trusted = "/path/to/ca.cert.pem"
//   profiles = "/usr/share/dojang/profiles.toml"
//   timeout_seconds = 30        # how long one CMP message may take
//   validity_days = 365         # optional: what every certificate of this CA is valid for, when
//                               # it is not the profile's (a test CA)
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>

namespace dojang::renewal {

struct CaConfig {
  std::string name;
  std::string host = "127.0.0.1";
  int port = 8829;
  std::string path = "/";
  std::string protocol = "cmp";
  std::string trustedFile;
  std::string profilesFile;
  std::optional<int> validityDays;
  int timeoutSeconds = 30;  // for each CMP message (timeout_seconds)
};

struct RenewalConfig {
  std::string defaultCa = "dojang-ca";
  int retireDays = 30;
  std::map<std::string, CaConfig> cas;

  // The CA named `name` (empty: the default). Throws dojang::Error(BadInput) naming the CAs known.
  [[nodiscard]] const CaConfig& ca(const std::string& name) const;
};

// $XDG_CONFIG_HOME/dojang/renewal.toml, else ~/.config/dojang/renewal.toml.
[[nodiscard]] std::filesystem::path defaultConfigPath();
// The file's settings over the defaults; a missing file gives the defaults. Throws
// dojang::Error(BadInput) naming the file and key for mistakes.
[[nodiscard]] RenewalConfig loadRenewalConfig(const std::filesystem::path& path);
// "http://host:port/path" into a CaConfig's host, port and path; throws for anything else.
void setCaUrl(CaConfig& ca, const std::string& url);

}  // namespace dojang::renewal
