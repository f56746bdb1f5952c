// dojang: the command line for people. Tokens and certificates are read through PKCS#11 (the
// same module applications load); daemon status through the wire protocol.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <string_view>

#include "src/cli/commands.h"
#include "src/common/version/dojang_version.h"

namespace {

void printJson(std::ostream& out, const nlohmann::json& document) {
  out << document.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
}

// One clear line on stderr; with --json the same as {"error": ...}.
int reportError(bool json, int exitCode, const std::string& message,
                const nlohmann::json& details = nlohmann::json::object()) {
  if (json) {
    nlohmann::json document = details.is_object() ? details : nlohmann::json::object();
    document["error"] = message;
    printJson(std::cerr, document);
  } else {
    std::cerr << "dojang: " << message << '\n';
  }
  return exitCode;
}

// The options `renew` and `enroll` share: the module, the PIN, the fee, the key type, the CA, the journal.
void addEngineOptions(CLI::App& command, dojang::cli::RenewOptions& options, const std::string& moduleHelp) {
  command.add_option("--module", options.module.module, moduleHelp);
  command.add_option("--pin-file", options.pinFile, "Read the token PIN from FILE (mode 0600)")
      ->type_name("FILE");
  command.add_flag("--pin-stdin", options.pinStdin, "Read the token PIN from standard input");
  command
      .add_option("--accept-fee", options.acceptFee,
                  "Accept the CA's fee of AMOUNT KRW (refused if it differs)")
      ->type_name("AMOUNT");
  command.add_option("--key-type", options.keyType,
                     "ec-p256, ec-p384, rsa-2048, ... (renew: as the old key)");
  command.add_option("--config", options.config,
                     "renewal.toml (default: $XDG_CONFIG_HOME/dojang/renewal.toml)");
  command.add_option("--ca", options.ca, "The CA in renewal.toml (default: its default_ca)");
  command.add_option("--ca-url", options.caUrl, "The CA's CMP URL, http://HOST:PORT/PATH");
  command.add_option("--ca-trusted", options.caTrusted, "The CA's trust anchors (PEM)")->type_name("FILE");
  command.add_option("--journal", options.journal,
                     "The journal (default: $XDG_STATE_HOME/dojang/renewal.db)");
  command.add_option("--lang", options.lang,
                     "en or ko: the language of the steps, prompts and errors (default: the locale)");
}

// enroll and reissue: the reference code, the new pair's label, and the engine's options.
void addCodeOptions(CLI::App& command, dojang::cli::EnrollOptions& options, bool& json,
                    const std::string& moduleHelp) {
  command.add_flag("--json", json, "Print JSON");
  command.add_option("--ref", options.reference, "The CA's reference number (참조번호)")->required();
  command.add_option("--code", options.code, "The authorization code (인가코드)");
  command.add_option("--token", options.token, "The token's label (default: the only one)");
  command.add_option("--label", options.label, "Label of the new key pair and certificate");
  addEngineOptions(command, options.common, moduleHelp);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace std::string_view_literals;
  // Known before parsing, so that usage errors honour --json too.
  bool json = std::any_of(argv + 1, argv + argc, [](const char* arg) { return arg == "--json"sv; });

  CLI::App app{"dojang: certificates and keys on your USB tokens and smart cards", "dojang"};
  app.require_subcommand(1);
  app.set_version_flag("--version", dojang::kVersion);

  dojang::cli::ModuleOptions tokensOptions;
  dojang::cli::CertsOptions certsOptions;
  dojang::cli::StatusOptions statusOptions;
  std::string tokensModule;
  std::string certsModule;
  std::string certsToken;
  std::int64_t expiring = 0;
  std::string socket;
  const std::string moduleHelp =
      "PKCS#11 module to load (default: $DOJANG_MODULE, else dojang-pkcs11.so); any vendor module works";

  auto* tokens =
      app.add_subcommand("tokens", "List the tokens: label, maker, serial, PIN state, certificates");
  tokens->add_flag("--json", json, "Print JSON");
  auto* tokensModuleOption = tokens->add_option("--module", tokensModule, moduleHelp);

  auto* certs =
      app.add_subcommand("certs", "List certificates on every token, with type, expiry and renewal advice");
  certs->add_flag("--json", json, "Print JSON");
  auto* certsModuleOption = certs->add_option("--module", certsModule, moduleHelp);
  auto* expiringOption = certs
                             ->add_option("--expiring", expiring,
                                          "Only certificates with at most DAYS days left (expired included)")
                             ->type_name("DAYS");
  auto* tokenOption =
      certs->add_option("--token", certsToken, "Only the token with this label")->type_name("LABEL");

  auto* status = app.add_subcommand("status", "Show whether dojangd runs, its clients, backends and slots");
  status->add_flag("--json", json, "Print JSON");
  auto* socketOption = status->add_option("--socket", socket,
                                          "dojangd's socket (default: $DOJANG_SOCKET or "
                                          "$XDG_RUNTIME_DIR/dojang/pkcs11.sock)");

  dojang::cli::RenewOptions renewOptions;
  auto* renew =
      app.add_subcommand("renew", "Renew a certificate on its token: new key on the token, CMP key update");
  renew->add_flag("--json", json, "Print JSON (never asks anything)");
  renew->add_option("CERT", renewOptions.certificate, "The certificate: its label, serial or a pkcs11: URI");
  addEngineOptions(*renew, renewOptions, moduleHelp);
  renew->add_flag("--delete-old", renewOptions.deleteOld,
                  "Delete the old pair at once (default: after retire_days)");
  renew->add_flag("--recover", renewOptions.recover, "Only finish or undo interrupted renewals");
  renew->add_flag("--history", renewOptions.history, "Show the journal's latest renewals and their steps");
  renew->add_flag("--auto", renewOptions.autoMode,
                  "Non-interactive, as dojangd's scheduler runs it: never prompts, exits 2 where it would");

  dojang::cli::EnrollOptions enrollOptions;
  auto* enroll = app.add_subcommand("enroll",
                                    "A first certificate: a key pair generated on the token, CMP ir with "
                                    "the CA's reference number and authorization code");
  addCodeOptions(*enroll, enrollOptions, json, moduleHelp);

  dojang::cli::EnrollOptions reissueOptions;
  reissueOptions.reissue = true;
  auto* reissue = app.add_subcommand("reissue",
                                     "재발급: a new certificate for a lost, expired or revoked one, "
                                     "with the CA's reissue reference number and authorization code");
  reissue->add_option("CERT", reissueOptions.replacing,
                      "The certificate replaced, if it is still on the token (its pair is retired)");
  addCodeOptions(*reissue, reissueOptions, json, moduleHelp);

  dojang::cli::SetupP11KitOptions setupOptions;
  auto* setup = app.add_subcommand("setup", "Set up how programs reach your tokens");
  setup->require_subcommand(1);
  auto* setupP11Kit = setup->add_subcommand(
      "p11-kit",
      "One route per card for p11-kit programs (GnuTLS, p11tool, the p11-kit proxy): hide OpenSC's "
      "module (--keep dojang, the default) or dojang's (--keep opensc) in ~/.config/pkcs11/modules, "
      "or remove that override (--keep both)");
  setupP11Kit->add_flag("--json", json, "Print JSON");
  setupP11Kit->add_option("--keep", setupOptions.keep, "dojang, opensc or both (default: dojang)")
      ->check(CLI::IsMember({"dojang", "opensc", "both"}));
  setupP11Kit->add_flag("--dry-run", setupOptions.dryRun, "Say what would change; change nothing");

  dojang::cli::SetupBrowserOptions browserOptions;
  std::string browserModule;
  auto* setupBrowser = app.add_subcommand(
      "setup-browser",
      "Register dojang's module (as \"dojang\") with modutil in the NSS databases of every Firefox "
      "profile and of Chromium ($HOME/.pki/nssdb); with --remove, take it out again. A profile an "
      "open Firefox holds is refused; the others are still done");
  setupBrowser->add_flag("--json", json, "Print JSON");
  auto* browserModuleOption = setupBrowser->add_option(
      "--module", browserModule, "The module to register (default: $DOJANG_MODULE, else dojang-pkcs11.so)");
  setupBrowser->add_flag("--remove", browserOptions.remove, "Remove the module \"dojang\" instead");
  setupBrowser->add_flag("--dry-run", browserOptions.dryRun, "Say what would change; change nothing");
  setupBrowser->add_flag("--force-direct", browserOptions.forceDirect,
                         "Add dojang also where p11-kit-proxy already brings it (tokens then show twice)");

  dojang::cli::PinOptions pinOptions;
  auto* pin = app.add_subcommand("pin", "The PINs of your tokens: tries left, change, unblock");
  pin->require_subcommand(1);
  const auto addPinCommon = [&](CLI::App& command, const std::string& tokenHelp) {
    command.add_flag("--json", json, "Print JSON");
    command.add_option("--module", pinOptions.module.module, moduleHelp);
    command.add_option("--token", pinOptions.token, tokenHelp)->type_name("LABEL");
  };
  auto* pinStatus = pin->add_subcommand(
      "status",
      "Each token's PIN mode (prompt: dojangd asks; application: the program asks) and the state of its "
      "user PIN and SO PIN (PUK), with the exact tries left where the token tells dojangd");
  addPinCommon(*pinStatus, "Only the token with this label");
  auto* pinChange = pin->add_subcommand(
      "change",
      "Change the user PIN (C_SetPIN). Without files dojangd asks through pinentry: the current PIN, "
      "then the new one twice");
  addPinCommon(*pinChange, "The token's label (default: the only one)");
  pinChange->add_option("--pin-file", pinOptions.pinFile, "Read the current PIN from FILE (mode 0600)")
      ->type_name("FILE");
  pinChange->add_option("--new-pin-file", pinOptions.newPinFile, "Read the new PIN from FILE (mode 0600)")
      ->type_name("FILE");
  auto* pinUnblock = pin->add_subcommand(
      "unblock",
      "Set a new user PIN with the PUK / SO PIN (C_Login as SO, then C_InitPIN), e.g. after it locked. "
      "Without files dojangd asks through pinentry: the PUK, then the new PIN twice");
  addPinCommon(*pinUnblock, "The token's label (default: the only one)");
  pinUnblock->add_option("--puk-file", pinOptions.pukFile, "Read the PUK / SO PIN from FILE (mode 0600)")
      ->type_name("FILE");
  pinUnblock->add_option("--new-pin-file", pinOptions.newPinFile, "Read the new PIN from FILE (mode 0600)")
      ->type_name("FILE");

  app.footer(
      "One card, one route: p11-kit programs (GnuTLS, p11tool, the p11-kit proxy) load every module\n"
      "registered with p11-kit, so a card read by OpenSC appears twice when OpenSC's module is\n"
      "registered too: once directly, once through dojang. `dojang setup p11-kit` keeps one route.");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    if (error.get_exit_code() == 0) {
      return app.exit(error);  // --help, --version
    }
    return reportError(json, dojang::cli::kExitUsage, std::string(error.what()) + " (see dojang --help)");
  }

  try {
    dojang::cli::CommandResult result;
    if (tokens->parsed()) {
      if (tokensModuleOption->count() > 0) {
        tokensOptions.module = tokensModule;
      }
      result = dojang::cli::runTokens(tokensOptions);
    } else if (certs->parsed()) {
      if (certsModuleOption->count() > 0) {
        certsOptions.module.module = certsModule;
      }
      if (expiringOption->count() > 0) {
        certsOptions.expiringDays = expiring;
      }
      if (tokenOption->count() > 0) {
        certsOptions.token = certsToken;
      }
      result = dojang::cli::runCerts(certsOptions);
    } else if (renew->parsed()) {
      renewOptions.json = json;
      result = dojang::cli::runRenew(renewOptions);
    } else if (setupP11Kit->parsed()) {
      result = dojang::cli::runSetupP11Kit(setupOptions);
    } else if (setupBrowser->parsed()) {
      if (browserModuleOption->count() > 0) {
        browserOptions.module.module = browserModule;
      }
      result = dojang::cli::runSetupBrowser(browserOptions);
    } else if (pinStatus->parsed()) {
      result = dojang::cli::runPinStatus(pinOptions);
    } else if (pinChange->parsed()) {
      result = dojang::cli::runPinChange(pinOptions);
    } else if (pinUnblock->parsed()) {
      result = dojang::cli::runPinUnblock(pinOptions);
    } else if (enroll->parsed() || reissue->parsed()) {
      auto& chosen = enroll->parsed() ? enrollOptions : reissueOptions;
      chosen.common.json = json;
      result = dojang::cli::runEnroll(chosen);
    } else {
      if (socketOption->count() > 0) {
        statusOptions.socket = socket;
      }
      result = dojang::cli::runStatus(statusOptions);
    }
    if (json) {
      printJson(std::cout, result.json);
    } else {
      std::cout << result.text;
    }
    std::cout.flush();
    return std::cout ? result.exitCode : dojang::cli::kExitFailure;
  } catch (const dojang::cli::CommandError& error) {
    return reportError(json, error.exitCode(), error.what(), error.details());
  } catch (const std::exception& error) {
    return reportError(json, dojang::cli::kExitFailure, error.what());
  }
}
