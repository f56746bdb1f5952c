// `dojang setup-browser [--remove]`: dojang's module, as module "dojang", in the NSS databases
// browsers load modules from: every Firefox profile and Chromium's $HOME/.pki/nssdb. Changes go
// through NSS's own modutil (never by editing pkcs11.txt) and only where they are needed, so a
// second run changes nothing. A profile a running Firefox holds is refused: Firefox rewrites its
// module list on exit, and would undo or corrupt the change. Where a database loads
// p11-kit-proxy and p11-kit loads dojang's module, the token reaches the browser through p11-kit
// already; adding dojang directly would show each token twice, so that database is left alone
// unless --force-direct.
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "src/cli/commands.h"
#include "src/cli/module_path.h"
#include "src/cli/nss_databases.h"
#include "src/cli/p11kit_modules.h"

namespace dojang::cli {

namespace {

namespace fs = std::filesystem;

constexpr const char* kModuleName = "dojang";
constexpr const char* kDojangLibrary = "dojang-pkcs11.so";

bool isP11KitProxy(const NssModule& module) {
  return fs::path(module.library).filename() == "p11-kit-proxy.so" || module.name == "p11-kit-proxy";
}

// What happened to one database.
struct Outcome {
  std::string result;  // added, updated, unchanged, removed, not-registered, refused, skipped, failed
  std::string message;
  std::optional<std::string> previousLibrary;
  std::optional<pid_t> pid;
  bool created = false;
  std::vector<std::string> notes;
};

std::string describeDatabase(const BrowserDatabase& database) {
  if (database.browser == "firefox") {
    return "Firefox profile \"" + database.profile + "\" (" + database.directory.string() + ")";
  }
  return "Chromium (sql:" + database.directory.string() + ")";
}

std::string joined(const std::vector<fs::path>& files) {
  std::string text;
  for (const auto& file : files) {
    text += (text.empty() ? "" : ", ") + file.string();
  }
  return text;
}

class BrowserSetup final {
 public:
  BrowserSetup(const SetupBrowserOptions& options, std::string library, std::vector<fs::path> p11KitRoute)
      : m_options(options), m_library(std::move(library)), m_p11KitRoute(std::move(p11KitRoute)) {}

  Outcome apply(const BrowserDatabase& database) {
    Outcome outcome;
    try {
      decide(database, outcome);
    } catch (const CommandError& error) {
      outcome.result = "failed";
      outcome.message = error.what();
    }
    return outcome;
  }

 private:
  void decide(const BrowserDatabase& database, Outcome& outcome) {
    if (database.browser == "firefox") {
      if (const auto pid = firefoxHoldingProfile(database.directory)) {
        outcome.result = "refused";
        outcome.pid = *pid;
        outcome.message = "Firefox is running" +
                          (*pid > 0 ? " (pid " + std::to_string(*pid) + ")" : std::string()) +
                          " with this profile: close it and run this again";
        return;
      }
    }
    std::vector<NssModule> modules;
    if (database.exists) {
      modules = listNssModules(database.directory);
    } else if (m_options.remove) {
      outcome.result = "not-registered";
      outcome.message = "no database here";
      return;
    } else {
      outcome.created = true;
      if (!m_options.dryRun) {
        createNssDatabase(database.directory);
      }
    }

    const NssModule* ours = nullptr;
    bool proxy = false;
    for (const auto& module : modules) {
      if (module.name == kModuleName) {
        ours = &module;
      } else if (fs::path(module.library).filename() == kDojangLibrary) {
        outcome.notes.push_back("module \"" + module.name + "\" loads " + module.library +
                                " too: each token shows twice; remove one (modutil -dbdir sql:" +
                                database.directory.string() + " -delete \"" + module.name + "\")");
      }
      proxy = proxy || isP11KitProxy(module);
    }

    if (m_options.remove) {
      if (ours == nullptr) {
        outcome.result = "not-registered";
        return;
      }
      outcome.previousLibrary = ours->library;
      if (!m_options.dryRun) {
        deleteNssModule(database.directory, kModuleName);
      }
      outcome.result = "removed";
      return;
    }

    if (proxy && !m_p11KitRoute.empty() && !m_options.forceDirect) {
      outcome.result = "skipped";
      outcome.message = "this database loads p11-kit-proxy, and p11-kit loads dojang's module (" +
                        joined(m_p11KitRoute) +
                        "): the token reaches it through p11-kit already; "
                        "adding dojang too would show it twice (--force-direct adds it anyway)";
      if (ours != nullptr) {
        outcome.notes.push_back(
            "dojang is registered here directly as well, so each token shows twice: "
            "`dojang setup-browser --remove` takes the direct route out");
      }
      return;
    }
    if (proxy) {
      outcome.notes.push_back(
          m_p11KitRoute.empty()
              ? std::string(
                    "this database loads p11-kit-proxy: a card that p11-kit reaches through another "
                    "module (OpenSC) shows again through dojang; `dojang setup p11-kit` keeps one route")
              : "this database loads p11-kit-proxy, which loads dojang's module too (" +
                    joined(m_p11KitRoute) + "): each token shows twice, through p11-kit and through dojang");
    }
    if (ours != nullptr && ours->library == m_library) {
      outcome.result = "unchanged";
      return;
    }
    if (ours != nullptr) {
      outcome.previousLibrary = ours->library;
      if (!m_options.dryRun) {
        deleteNssModule(database.directory, kModuleName);
      }
    }
    if (!m_options.dryRun) {
      try {
        addNssModule(database.directory, kModuleName, m_library);
      } catch (const CommandError& error) {
        if (!outcome.previousLibrary) {
          throw;
        }
        throw CommandError(kExitFailure, std::string(error.what()) + "; the registration of " +
                                             *outcome.previousLibrary + " was removed before");
      }
    }
    outcome.result = ours != nullptr ? "updated" : "added";
  }

  const SetupBrowserOptions& m_options;
  std::string m_library;
  std::vector<fs::path> m_p11KitRoute;
};

std::string resultText(const Outcome& outcome, bool dryRun, const std::string& library) {
  std::string text;
  if (outcome.result == "added") {
    text = (dryRun ? "would add " : "added ") + library;
  } else if (outcome.result == "updated") {
    text =
        (dryRun ? "would update to " : "updated to ") + library + " (was " + *outcome.previousLibrary + ")";
  } else if (outcome.result == "unchanged") {
    text = "already registered (" + library + ")";
  } else if (outcome.result == "removed") {
    text = (dryRun ? "would remove " : "removed ") + *outcome.previousLibrary;
  } else if (outcome.result == "not-registered") {
    text = "not registered";
  } else {
    text = outcome.result;
  }
  if (outcome.created) {
    text += dryRun ? " (in a database this would create)" : " (in a new database)";
  }
  if (!outcome.message.empty()) {
    text += ": " + outcome.message;
  }
  return text;
}

}  // namespace

CommandResult runSetupBrowser(const SetupBrowserOptions& options) {
  const char* home = std::getenv("HOME");
  if (home == nullptr || *home == 0) {
    throw CommandError(kExitFailure, "$HOME is not set: no browser profiles to find");
  }
  const ModuleChoice choice = resolveModulePath(options.module.module);
  std::error_code error;
  const std::string library = fs::absolute(choice.path, error).lexically_normal().string();
  if (!options.remove && !fs::is_regular_file(library, error)) {
    throw CommandError(kExitFailure,
                       "no module at " + library + " (from " + choice.source + ")" +
                           (choice.source == "--module" ? "" : ": pass --module PATH"),
                       {{"module", library}});
  }

  std::vector<std::string> notes;
  const auto databases = findBrowserDatabases(home, notes);
  BrowserSetup setup(options, library, p11KitEnabledFilesLoading(kDojangLibrary));

  CommandResult result;
  result.json = {{"module", library},
                 {"moduleSource", choice.source},
                 {"remove", options.remove},
                 {"dryRun", options.dryRun},
                 {"databases", nlohmann::json::array()}};
  std::ostringstream text;
  bool changed = false;
  for (const auto& database : databases) {
    const Outcome outcome = setup.apply(database);
    const bool changes =
        outcome.result == "added" || outcome.result == "updated" || outcome.result == "removed";
    changed = changed || changes;
    if (outcome.result == "refused" || outcome.result == "failed") {
      result.exitCode = kExitFailure;
    }
    nlohmann::json entry = {{"browser", database.browser},
                            {"database", "sql:" + database.directory.string()},
                            {"result", outcome.result},
                            {"created", outcome.created},
                            {"notes", outcome.notes}};
    if (database.browser == "firefox") {
      entry["profile"] = database.profile;
    }
    if (!outcome.message.empty()) {
      entry["message"] = outcome.message;
    }
    if (outcome.previousLibrary) {
      entry["previousLibrary"] = *outcome.previousLibrary;
    }
    if (outcome.pid) {
      entry["pid"] = *outcome.pid;
    }
    result.json["databases"].push_back(entry);
    text << describeDatabase(database) << ": " << resultText(outcome, options.dryRun, library) << '\n';
    for (const auto& note : outcome.notes) {
      text << "  note: " << note << '\n';
    }
  }
  if (changed && !options.dryRun) {
    notes.push_back("browsers read their module list when they start: restart Chromium if it is open");
  }
  result.json["notes"] = notes;
  result.json["changed"] = changed;
  for (const auto& note : notes) {
    text << "note: " << note << '\n';
  }
  if (!changed && result.exitCode == kExitOk) {
    text << "nothing to change\n";
  }
  result.text = text.str();
  return result;
}

}  // namespace dojang::cli
