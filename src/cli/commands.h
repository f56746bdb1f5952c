// The `dojang` subcommands. Each builds its result once, as JSON; people get it as text.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

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
  std::string text;        // for people; ends with a newline
  int exitCode = kExitOk;  // a command that did part of its work says so with kExitFailure
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

struct RenewOptions {
  ModuleOptions module;
  std::optional<std::string> certificate;  // CERT: a label, a serial or a pkcs11: URI
  std::optional<std::string> pinFile;      // --pin-file (mode 0600)
  bool pinStdin = false;                   // --pin-stdin
  std::optional<long long> acceptFee;      // --accept-fee AMOUNT (KRW)
  std::optional<std::string> keyType;      // --key-type
  bool deleteOld = false;                  // --delete-old
  bool recover = false;                    // --recover: finish or undo interrupted renewals only
  bool history = false;                    // --history: the journal's latest renewals
  std::optional<std::string> config;       // --config (renewal.toml)
  std::optional<std::string> ca;           // --ca NAME
  std::optional<std::string> caUrl;        // --ca-url http://host:port/path
  std::optional<std::string> caTrusted;    // --ca-trusted PEM
  std::optional<std::string> journal;      // --journal PATH
  bool autoMode = false;                   // --auto: dojangd's scheduler; never prompts (exit 2 instead)
  std::optional<std::string> lang;         // --lang en|ko (default: the locale)
  bool json = false;
};

// `dojang enroll`: the renewal options that apply (module, PIN, CA, journal, key type, fee, json)
// and the CA's reference number and authorization code.
struct EnrollOptions {
  RenewOptions common;
  std::string reference;                 // --ref (참조번호)
  std::optional<std::string> code;       // --code (인가코드); asked on the terminal when absent
  std::optional<std::string> token;      // --token LABEL (default: the only token)
  std::string label = "dojang";          // --label of the new pair and certificate
  bool reissue = false;                  // `dojang reissue`: a reissue reference code
  std::optional<std::string> replacing;  // reissue's CERT: the certificate it replaces, if still on the token
};

// `dojang setup p11-kit`: which route p11-kit programs take to the cards.
struct SetupP11KitOptions {
  std::string keep = "dojang";  // --keep dojang|opensc|both
  bool dryRun = false;          // --dry-run: say what would change, change nothing
};

// `dojang setup-browser`: dojang's module in the NSS databases of Firefox's profiles and Chromium.
struct SetupBrowserOptions {
  ModuleOptions module;      // --module (default: as the other commands choose it)
  bool remove = false;       // --remove: take it out again
  bool dryRun = false;       // --dry-run: say what would change, change nothing
  bool forceDirect = false;  // --force-direct: add it even where p11-kit-proxy brings it already
};

// `dojang pin status|change|unblock`. Without files the PINs are left to dojangd, which asks
// through pinentry (a PIN given to C_SetPIN/C_InitPIN empty, or to C_Login as NULL).
struct PinOptions {
  ModuleOptions module;
  std::optional<std::string> token;       // --token LABEL (change, unblock: default the only token)
  std::optional<std::string> pinFile;     // change: --pin-file, the current PIN (mode 0600)
  std::optional<std::string> pukFile;     // unblock: --puk-file, the PUK / SO PIN (mode 0600)
  std::optional<std::string> newPinFile;  // change, unblock: --new-pin-file (mode 0600)
};

[[nodiscard]] CommandResult runTokens(const ModuleOptions& options);
[[nodiscard]] CommandResult runCerts(const CertsOptions& options);
[[nodiscard]] CommandResult runStatus(const StatusOptions& options);
[[nodiscard]] CommandResult runRenew(const RenewOptions& options);
[[nodiscard]] CommandResult runEnroll(const EnrollOptions& options);
[[nodiscard]] CommandResult runSetupP11Kit(const SetupP11KitOptions& options);
[[nodiscard]] CommandResult runSetupBrowser(const SetupBrowserOptions& options);
[[nodiscard]] CommandResult runPinStatus(const PinOptions& options);
[[nodiscard]] CommandResult runPinChange(const PinOptions& options);
[[nodiscard]] CommandResult runPinUnblock(const PinOptions& options);

}  // namespace dojang::cli
