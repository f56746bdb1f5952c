#include "src/renewal/config/renewal_config.h"

#include <toml++/toml.h>

#include <cstdlib>
#include <string_view>

#include "src/common/errors/error.h"

namespace dojang::renewal {

namespace {

[[noreturn]] void badConfig(const std::string& message) {
  throw Error(CKR_ARGUMENTS_BAD, ErrorKind::BadInput, message);
}

}  // namespace

const CaConfig& RenewalConfig::ca(const std::string& name) const {
  const std::string wanted = name.empty() ? defaultCa : name;
  if (auto it = cas.find(wanted); it != cas.end()) {
    return it->second;
  }
  std::string known;
  for (const auto& [key, value] : cas) {
    known += (known.empty() ? "" : ", ") + key;
  }
  badConfig("no CA named \"" + wanted + "\" in renewal.toml (known: " + (known.empty() ? "none" : known) +
            ")");
}

std::filesystem::path defaultConfigPath() {
  if (const char* config = std::getenv("XDG_CONFIG_HOME"); config != nullptr && *config != '\0') {
    return std::filesystem::path(config) / "dojang" / "renewal.toml";
  }
  const char* home = std::getenv("HOME");
  return std::filesystem::path(home != nullptr ? home : ".") / ".config" / "dojang" / "renewal.toml";
}

void setCaUrl(CaConfig& ca, const std::string& url) {
  constexpr std::string_view scheme = "http://";
  if (url.rfind(scheme, 0) != 0) {
    badConfig("CA url \"" + url + "\": only http:// URLs are supported (CMP over HTTP, RFC 6712)");
  }
  const std::string rest = url.substr(scheme.size());
  const auto slash = rest.find('/');
  const std::string authority = rest.substr(0, slash);
  ca.path = slash == std::string::npos ? "/" : rest.substr(slash);
  const auto colon = authority.rfind(':');
  ca.host = authority.substr(0, colon);
  ca.port = 80;
  if (colon != std::string::npos) {
    try {
      ca.port = std::stoi(authority.substr(colon + 1));
    } catch (const std::exception&) {
      badConfig("CA url \"" + url + "\": the port is not a number");
    }
  }
  if (ca.host.empty() || ca.port <= 0 || ca.port > 65535) {
    badConfig("CA url \"" + url + "\": needs a host and a port 1..65535");
  }
}

RenewalConfig loadRenewalConfig(const std::filesystem::path& path) {
  RenewalConfig config;
  CaConfig dojangCa;
  dojangCa.name = "dojang-ca";
  config.cas.emplace(dojangCa.name, dojangCa);
  std::error_code missing;
  if (!std::filesystem::exists(path, missing)) {
    return config;
  }
  toml::table table;
  try {
    table = toml::parse_file(path.string());
  } catch (const toml::parse_error& error) {
    badConfig(path.string() + ": " + std::string(error.description()));
  }
  const auto where = [&](const std::string& key) { return path.string() + ": " + key; };
  if (const auto* renewal = table["renewal"].as_table()) {
    config.defaultCa = (*renewal)["default_ca"].value_or(config.defaultCa);
    config.retireDays = (*renewal)["retire_days"].value_or(config.retireDays);
    if (config.retireDays < 0) {
      badConfig(where("renewal.retire_days") + " must not be negative");
    }
  }
  if (const auto* cas = table["ca"].as_table()) {
    for (const auto& [key, node] : *cas) {
      const auto* entry = node.as_table();
      const std::string name(key.str());
      if (entry == nullptr) {
        badConfig(where("ca." + name) + " must be a table");
      }
      CaConfig ca;
      ca.name = name;
      if (const auto url = (*entry)["url"].value<std::string>()) {
        setCaUrl(ca, *url);
      }
      ca.protocol = (*entry)["protocol"].value_or(ca.protocol);
      if (ca.protocol != "cmp") {
        badConfig(where("ca." + name + ".protocol") + ": \"" + ca.protocol +
                  "\" is not supported yet (cmp is)");
      }
      ca.trustedFile = (*entry)["trusted"].value_or(std::string{});
      ca.profilesFile = (*entry)["profiles"].value_or(std::string{});
      ca.timeoutSeconds = (*entry)["timeout_seconds"].value_or(ca.timeoutSeconds);
      if (ca.timeoutSeconds <= 0) {
        badConfig(where("ca." + name + ".timeout_seconds") + " must be positive");
      }
      if (const auto days = (*entry)["validity_days"].value<int>()) {
        ca.validityDays = *days;
      }
      config.cas[name] = std::move(ca);
    }
  }
  return config;
}

}  // namespace dojang::renewal
