// `dojang setup p11-kit`: one route per card for p11-kit programs. When OpenSC's module and
// dojang's are both registered with p11-kit, a GnuTLS program (p11tool, gnutls-cli) or anything
// behind p11-kit-proxy.so sees each card twice: directly through OpenSC, and through dojang, whose
// dojangd reads the same card with OpenSC. The command writes a user-level module config, named
// like the system's file of the route not kept, that holds an empty `enable-in:`. p11-kit reads
// user module configs first and lets the system file of the same name only fill in the keys the
// user file lacks (pkcs11.conf(5), "merge"), and enable-in lists the only programs that load the
// module: none. p11-kit then never loads it, checked before dlopen. (A blank `module:`, the man
// page's other way, makes p11-kit dlopen its module directory and fail.)
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "src/cli/commands.h"
#include "src/cli/p11kit_modules.h"

namespace dojang::cli {

namespace {

namespace fs = std::filesystem;

// The first line of every file this command writes: only such files are ever replaced or removed.
constexpr const char* kMarker = "# Written by `dojang setup p11-kit";
constexpr const char* kOpenscModule = "opensc-pkcs11.so";
constexpr const char* kDojangModule = "dojang-pkcs11.so";

bool writtenByUs(const fs::path& file) {
  std::ifstream in(file);
  std::string first;
  std::getline(in, first);
  return first.rfind(kMarker, 0) == 0;
}

std::string overrideText(const std::string& keep, const std::string& hidden) {
  return std::string(kMarker) + " --keep " + keep + "`.\n" +
         "# An empty enable-in: no program of this user loads " + hidden + " through p11-kit, so each\n" +
         "# card appears once, through " + (keep == "dojang" ? "dojang" : "OpenSC") +
         ". The system's file of the same name still gives the rest.\n"
         "# `dojang setup p11-kit --keep both` removes this file.\n"
         "enable-in:\n";
}

void writeAtomically(const fs::path& file, const std::string& text) {
  fs::create_directories(file.parent_path());
  const fs::path temporary = file.string() + ".dojang-new";
  {
    std::ofstream out(temporary, std::ios::trunc);
    out << text;
    if (!out.flush()) {
      throw CommandError(kExitFailure, "cannot write " + temporary.string());
    }
  }
  fs::rename(temporary, file);
}

struct Change {
  fs::path file;
  std::string action;  // "write", "remove" or "unchanged"
  std::string hides;   // the library the file keeps p11-kit from loading
};

}  // namespace

CommandResult runSetupP11Kit(const SetupP11KitOptions& options) {
  if (options.keep != "dojang" && options.keep != "opensc" && options.keep != "both") {
    throw CommandError(kExitUsage, "--keep takes dojang, opensc or both, not '" + options.keep + "'");
  }
  const fs::path userDir = p11KitUserModuleDir();
  const auto systemDirs = p11KitSystemModuleDirs();
  std::vector<std::string> warnings;

  // Which route each system file is; the user files override them by name.
  const std::vector<std::pair<std::string, std::vector<std::string>>> routes = {
      {kOpenscModule, p11KitFilesLoading(systemDirs, kOpenscModule)},
      {kDojangModule, p11KitFilesLoading(systemDirs, kDojangModule)}};
  const std::string hiddenLibrary = options.keep == "dojang"   ? kOpenscModule
                                    : options.keep == "opensc" ? kDojangModule
                                                               : "";

  std::vector<Change> changes;
  for (const auto& [library, names] : routes) {
    for (const auto& name : names) {
      const fs::path file = userDir / name;
      const bool exists = fs::exists(file);
      const bool ours = exists && writtenByUs(file);
      if (library == hiddenLibrary) {
        if (exists && !ours) {
          throw CommandError(
              kExitFailure,
              file.string() + " exists and was not written by dojang: edit or remove it yourself",
              {{"file", file.string()}});
        }
        const std::string text = overrideText(options.keep, library);
        std::ifstream current(file);
        const std::string present((std::istreambuf_iterator<char>(current)),
                                  std::istreambuf_iterator<char>());
        changes.push_back({file, exists && present == text ? "unchanged" : "write", library});
      } else if (ours) {
        changes.push_back({file, "remove", library});
      }
    }
  }

  if (options.keep == "dojang" && routes[0].second.empty()) {
    warnings.push_back("OpenSC is not registered with p11-kit (no module file in " + systemDirs[0].string() +
                       " or " + systemDirs[1].string() + " loads " + kOpenscModule +
                       "): cards have one route already");
  }
  if (options.keep == "opensc" && routes[1].second.empty()) {
    warnings.push_back(std::string("dojang's module is not registered with p11-kit (no module file in ") +
                       systemDirs[0].string() + " or " + systemDirs[1].string() + " loads " + kDojangModule +
                       "): p11-kit programs reach cards through OpenSC only already");
  }
  if (options.keep == "dojang" && routes[1].second.empty() &&
      p11KitFilesLoading({userDir}, kDojangModule).empty()) {
    warnings.push_back(
        std::string("dojang's module is not registered with p11-kit (no dojang.module loading ") +
        kDojangModule +
        "): p11-kit programs see cards through neither route until it is "
        "(meson install puts it in " +
        DOJANG_P11KIT_PACKAGE_MODULES + ")");
  }
  if (::geteuid() == 0) {
    warnings.push_back(
        "p11-kit reads no user configuration in programs run as root: this changes what "
        "programs of the user owning " +
        userDir.string() + " see, when not run as root");
  }
  if (const auto mode = p11KitConfigField(fs::path(DOJANG_P11KIT_SYSTEM_CONFIG), "user-config");
      mode && *mode == "none") {
    warnings.push_back(std::string(DOJANG_P11KIT_SYSTEM_CONFIG) +
                       " says user-config: none, so p11-kit ignores the files written here");
  }

  CommandResult result;
  result.json = {{"keep", options.keep},
                 {"dryRun", options.dryRun},
                 {"userModules", userDir.string()},
                 {"changes", nlohmann::json::array()},
                 {"warnings", warnings}};
  std::ostringstream text;
  bool changed = false;
  for (const auto& change : changes) {
    if (!options.dryRun && change.action == "write") {
      writeAtomically(change.file, overrideText(options.keep, change.hides));
    } else if (!options.dryRun && change.action == "remove") {
      fs::remove(change.file);
    }
    changed = changed || change.action != "unchanged";
    result.json["changes"].push_back(
        {{"file", change.file.string()}, {"action", change.action}, {"hides", change.hides}});
    const std::string verb = change.action == "unchanged" ? "unchanged: "
                             : change.action == "write"   ? (options.dryRun ? "would write " : "wrote ")
                                                          : (options.dryRun ? "would remove " : "removed ");
    text << verb << change.file.string()
         << (change.action == "remove" ? " (p11-kit loads " + change.hides + " again)"
                                       : " (p11-kit loads no " + change.hides + ")")
         << '\n';
  }
  for (const auto& warning : warnings) {
    text << "note: " << warning << '\n';
  }
  const std::string outcome = options.keep == "both"
                                  ? "p11-kit programs load both OpenSC and dojang (cards may appear twice)"
                              : options.keep == "dojang" ? "p11-kit programs reach cards through dojang only"
                                                         : "p11-kit programs reach cards through OpenSC only";
  text << (changed ? "" : "nothing to change: ") << outcome
       << (options.dryRun && changed ? " (after this is done)" : "") << '\n';
  result.text = text.str();
  return result;
}

}  // namespace dojang::cli
