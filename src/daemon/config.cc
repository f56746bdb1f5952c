#include "src/daemon/config.h"

#include <toml++/toml.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include "src/common/errors/error.h"

namespace dojang::daemon {

namespace {
constexpr const char* kOpenscCandidates[] = {
    "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so",
    "/usr/lib/aarch64-linux-gnu/opensc-pkcs11.so",
    "/usr/lib64/opensc-pkcs11.so",
    "/usr/lib/opensc-pkcs11.so",
};

[[noreturn]] void badRenewal(const std::string& source, const std::string& message) {
  fail(CKR_GENERAL_ERROR, source + ": renewal." + message);
}

void parseRenewal(const toml::table& table, const std::string& source, RenewalSchedule& renewal) {
  const auto* section = table["renewal"].as_table();
  if (section == nullptr) {
    return;
  }
  const auto seconds = [&](const char* key, std::int64_t least, std::chrono::seconds& out) {
    if (const auto value = (*section)[key].value<std::int64_t>()) {
      if (*value < least || *value > 30LL * 86400) {
        badRenewal(source, std::string(key) + " must be " + std::to_string(least) + ".." +
                               std::to_string(30LL * 86400));
      }
      out = std::chrono::seconds(*value);
    }
  };
  seconds("check_interval_seconds", 1, renewal.checkInterval);
  seconds("retry_initial_seconds", 1, renewal.retryInitial);
  seconds("retry_max_seconds", 1, renewal.retryMax);
  if (const auto* days = (*section)["notify_days"].as_array()) {
    renewal.notifyDays.clear();
    for (const auto& node : *days) {
      const auto day = node.value<std::int64_t>();
      if (!day || *day < 0 || *day > 365) {
        badRenewal(source, "notify_days must be whole days 0..365");
      }
      renewal.notifyDays.push_back(static_cast<int>(*day));
    }
    std::sort(renewal.notifyDays.begin(), renewal.notifyDays.end(), std::greater<>());
    renewal.notifyDays.erase(std::unique(renewal.notifyDays.begin(), renewal.notifyDays.end()),
                             renewal.notifyDays.end());
  }
  const auto path = [&](const char* key) -> std::optional<std::string> {
    const auto value = (*section)[key].value<std::string>();
    if (value && value->empty()) {
      badRenewal(source, std::string(key) + " must not be empty");
    }
    return value;
  };
  renewal.pinFile = path("pin_file");
  renewal.dojangCli = path("dojang_cli");
  if (const auto* entries = (*section)["auto"].as_array()) {
    std::size_t index = 0;
    for (const auto& node : *entries) {
      ++index;
      const auto* entry = node.as_table();
      const std::string where = "auto #" + std::to_string(index);
      if (entry == nullptr) {
        badRenewal(source, where + " must be a table ([[renewal.auto]])");
      }
      AutoRenewal rule;
      rule.certificate = (*entry)["certificate"].value_or(std::string());
      rule.profile = (*entry)["profile"].value_or(std::string());
      if (rule.certificate.empty() == rule.profile.empty()) {
        badRenewal(source, where + " needs exactly one of certificate = \"LABEL\" or profile = \"ID\"");
      }
      const auto fee = (*entry)["max_fee_krw"].value<std::int64_t>();
      if (fee && *fee < 0) {
        badRenewal(source, where + ": max_fee_krw must not be negative");
      }
      rule.maxFeeKrw = fee.value_or(0);
      renewal.automatic.push_back(std::move(rule));
    }
  }
}

[[noreturn]] void badPiv(const std::string& source, const std::string& message) {
  fail(CKR_GENERAL_ERROR, source + ": piv." + message);
}

void parsePiv(const toml::table& table, const std::string& source, piv::PivSettings& settings) {
  const auto* section = table["piv"].as_table();
  if (section == nullptr) {
    return;
  }
  if (const auto* enabled = (*section)["enabled"].as_boolean()) {
    settings.enabled = enabled->get();
  } else if ((*section)["enabled"]) {
    badPiv(source, "enabled must be true or false");
  }
  if (const auto* readers = (*section)["readers"].as_array()) {
    settings.readers.clear();
    for (const auto& node : *readers) {
      const auto pattern = node.value<std::string>();
      if (!pattern || pattern->empty()) {
        badPiv(source, "readers must be a list of reader-name patterns (\"Yubico*\")");
      }
      settings.readers.push_back(*pattern);
    }
    if (settings.readers.empty()) {
      badPiv(source, "readers must not be empty (leave it out for every reader)");
    }
  }
  if (const auto overlay = (*section)["overlay_file"]) {
    const auto path = overlay.value<std::string>();
    if (!path || path->empty()) {
      badPiv(source, "overlay_file must be a path");
    }
    settings.overlayFile = *path;
  }
  const auto* cards = (*section)["card"].as_array();
  if (cards == nullptr) {
    return;
  }
  std::size_t index = 0;
  for (const auto& node : *cards) {
    ++index;
    const std::string where = "card #" + std::to_string(index);
    const auto* entry = node.as_table();
    if (entry == nullptr) {
      badPiv(source, where + " must be a table ([[piv.card]])");
    }
    piv::PivCardSettings card;
    card.serial = (*entry)["serial"].value_or(std::string());
    card.reader = (*entry)["reader"].value_or(std::string());
    card.managementKeyFile = (*entry)["management_key_file"].value_or(std::string());
    card.managementKeyAlgorithm = (*entry)["management_key_algorithm"].value_or(std::string());
    if (card.serial.empty() && card.reader.empty()) {
      badPiv(source, where + " needs serial = \"...\" or reader = \"...\"");
    }
    if (card.managementKeyFile.empty()) {
      badPiv(source, where + " needs management_key_file = \"path\"");
    }
    static constexpr const char* kAlgorithms[] = {"", "3des", "aes128", "aes192", "aes256"};
    if (std::none_of(std::begin(kAlgorithms), std::end(kAlgorithms),
                     [&](const char* name) { return card.managementKeyAlgorithm == name; })) {
      badPiv(source, where + ": management_key_algorithm must be 3des, aes128, aes192 or aes256");
    }
    settings.cards.push_back(std::move(card));
  }
}

[[noreturn]] void badPin(const std::string& source, const std::string& message) {
  fail(CKR_GENERAL_ERROR, source + ": pin." + message);
}

PinMode parsePinMode(const toml::node_view<const toml::node>& node, const std::string& source,
                     const std::string& where) {
  const auto name = node.value<std::string>();
  if (name == "prompt") {
    return PinMode::Prompt;
  }
  if (name == "application") {
    return PinMode::Application;
  }
  badPin(source, where + " must be \"prompt\" (dojangd asks through pinentry) or \"application\" (C_Login)");
}

void parsePin(const toml::table& table, const std::string& source, PinSettings& settings) {
  const auto* section = table["pin"].as_table();
  if (section == nullptr) {
    return;
  }
  const toml::node_view<const toml::node> pin(section);
  if (pin["mode"]) {
    settings.defaultMode = parsePinMode(pin["mode"], source, "mode");
  }
  const auto text = [&](const char* key, std::string& out) {
    if (!pin[key]) {
      return;
    }
    const auto value = pin[key].value<std::string>();
    if (!value) {
      badPin(source, std::string(key) + " must be a string");
    }
    out = *value;
  };
  text("program", settings.program);
  text("display", settings.display);
  text("tty", settings.tty);
  if (settings.program.empty()) {
    badPin(source, "program must name a pinentry program");
  }
  if (pin["cache"]) {
    const auto cache = pin["cache"].value<std::string>();
    if (cache == "off") {
      settings.cache = PinCache::Off;
    } else if (cache == "connection") {
      settings.cache = PinCache::PerConnection;
    } else if (cache == "timed") {
      settings.cache = PinCache::Timed;
    } else {
      badPin(source, "cache must be \"off\", \"connection\" or \"timed\"");
    }
  }
  const auto seconds = [&](const char* key, std::int64_t most, std::chrono::seconds& out) {
    if (!pin[key]) {
      return;
    }
    const auto value = pin[key].value<std::int64_t>();
    if (!value || *value < 1 || *value > most) {
      badPin(source, std::string(key) + " must be 1.." + std::to_string(most));
    }
    out = std::chrono::seconds(*value);
  };
  seconds("cache_seconds", 7 * 86400, settings.cacheLifetime);
  seconds("timeout_seconds", 3600, settings.timeout);
  if (const auto* rules = pin["token"].as_array()) {
    std::size_t index = 0;
    for (const auto& node : *rules) {
      ++index;
      const std::string where = "token #" + std::to_string(index);
      const auto* entry = node.as_table();
      if (entry == nullptr) {
        badPin(source, where + " must be a table ([[pin.token]])");
      }
      const toml::node_view<const toml::node> rule(entry);
      PinTokenRule parsed;
      parsed.label = rule["label"].value_or(std::string());
      parsed.serial = rule["serial"].value_or(std::string());
      if (parsed.label.empty() && parsed.serial.empty()) {
        badPin(source, where + " needs label = \"...\" or serial = \"...\"");
      }
      parsed.mode = parsePinMode(rule["mode"], source, where + ": mode");
      settings.tokens.push_back(std::move(parsed));
    }
  }
}

void addDefaultBackend(Config& config) {
  for (const char* candidate : kOpenscCandidates) {
    if (std::filesystem::exists(candidate)) {
      config.backends.push_back({"opensc", candidate});
      return;
    }
  }
}
}  // namespace

std::string defaultConfigPath() {
  if (const char* env = std::getenv("DOJANG_CONFIG"); env != nullptr && *env != 0) {
    return env;
  }
  if (const char* xdg = std::getenv("XDG_CONFIG_HOME"); xdg != nullptr && *xdg != 0) {
    return std::string(xdg) + "/dojang/dojangd.toml";
  }
  const char* home = std::getenv("HOME");
  return std::string(home != nullptr ? home : "") + "/.config/dojang/dojangd.toml";
}

Config parseConfig(const std::string& text, const std::string& source) {
  Config config;
  config.source = source;
  toml::table table;
  try {
    table = toml::parse(text, source);
  } catch (const toml::parse_error& error) {
    std::ostringstream message;
    message << source << ":" << error.source().begin.line << ": " << error.description();
    fail(CKR_GENERAL_ERROR, message.str());
  }
  const auto daemonInteger = [&](const char* key, std::int64_t least,
                                 std::int64_t most) -> std::optional<std::int64_t> {
    const auto value = table["daemon"][key].value<std::int64_t>();
    if (value && (*value < least || *value > most)) {
      fail(CKR_GENERAL_ERROR,
           source + ": daemon." + key + " must be " + std::to_string(least) + ".." + std::to_string(most));
    }
    return value;
  };
  if (const auto interval = daemonInteger("poll_interval_ms", 50, 600000)) {
    config.pollInterval = std::chrono::milliseconds(*interval);
  }
  if (const auto connections = daemonInteger("max_connections", 1, 100000)) {
    config.connections.maxConnections = static_cast<std::size_t>(*connections);
  }
  if (const auto perProcess = daemonInteger("max_connections_per_process", 1, 100000)) {
    config.connections.maxConnectionsPerProcess = static_cast<std::size_t>(*perProcess);
  }
  if (const auto timeout = daemonInteger("hello_timeout_ms", 50, 600000)) {
    config.connections.helloTimeout = std::chrono::milliseconds(*timeout);
  }
  if (const auto* backends = table["backend"].as_array()) {
    std::size_t index = 0;
    for (const auto& node : *backends) {
      ++index;
      const auto* entry = node.as_table();
      const auto module = entry != nullptr ? (*entry)["module"].value<std::string>() : std::nullopt;
      if (!module || module->empty()) {
        fail(CKR_GENERAL_ERROR, source + ": backend #" + std::to_string(index) + " needs module = \"path\"");
      }
      const auto name = (*entry)["name"].value<std::string>();
      config.backends.push_back({name.value_or(std::filesystem::path(*module).stem().string()), *module});
    }
  }
  parseRenewal(table, source, config.renewal);
  parsePiv(table, source, config.piv);
  parsePin(table, source, config.pin);
  if (config.backends.empty()) {
    addDefaultBackend(config);
  }
  return config;
}

Config loadConfig(const std::optional<std::string>& path) {
  const std::string file = path.value_or(defaultConfigPath());
  std::ifstream in(file);
  if (!in) {
    if (path) {
      fail(CKR_GENERAL_ERROR, "cannot read config file " + file);
    }
    Config config;
    config.source = "built-in defaults";
    addDefaultBackend(config);
    return config;
  }
  std::stringstream text;
  text << in.rdbuf();
  return parseConfig(text.str(), file);
}

}  // namespace dojang::daemon
