// The `dojang` subcommands. Each builds its result once, as JSON; people get it as text.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace dojang::cli {

// Exit codes: part of the CLI's interface, scripts rely on them.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitDaemonUnreachable = 3;

// A failure that maps to a specific exit code, with extra JSON fields for --json.
class CommandError final : public std::runtime_error {
 public:
  CommandError(int exitCode, const std::string& message, nlohmann::json details = nlohmann::json::object())
      : std::runtime_error(message), m_exitCode(exitCode), m_details(std::move(details)) {}
  [[nodiscard]] int exitCode() const noexcept { return m_exitCode; }
  [[nodiscard]] const nlohmann::json& details() const noexcept { return m_details; }

 private:
  int m_exitCode;
  nlohmann::json m_details;
};

struct CommandResult {
  nlohmann::json json;
  std::string text;  // for people; ends with a newline
};

struct ModuleOptions {
  std::optional<std::string> module;  // --module
};

struct CertsOptions {
  ModuleOptions module;
  std::optional<std::int64_t> expiringDays;  // --expiring DAYS: only days left <= DAYS
  std::optional<std::string> token;          // --token LABEL
};

struct StatusOptions {
  std::optional<std::string> socket;  // --socket PATH
};

[[nodiscard]] CommandResult runTokens(const ModuleOptions& options);
[[nodiscard]] CommandResult runCerts(const CertsOptions& options);
[[nodiscard]] CommandResult runStatus(const StatusOptions& options);

}  // namespace dojang::cli
