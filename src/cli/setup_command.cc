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

namespace dojang::cli {

namespace {

namespace fs = std::filesystem;

// The first line of every file this command writes: only such files are ever replaced or removed.
constexpr const char* kMarker = "# Written by `dojang setup p11-kit";
constexpr const char* kOpenscModule = "opensc-pkcs11.so";
constexpr const char* kDojangModule = "dojang-pkcs11.so";

// Where p11-kit reads module configs (p11-kit's pkg-config at build time): its package's, then
// the administrator's.
std::vector<fs::path> systemModuleDirs() { return {DOJANG_P11KIT_PACKAGE_MODULES, DOJANG_P11KIT_SYSTEM_MODULES}; }

// ~/.config/pkcs11/modules, which p11-kit expands with $XDG_CONFIG_HOME when that is set.
fs::path userModuleDir() {
  if (const char* xdg = std::getenv("XDG_CONFIG_HOME"); xdg != nullptr && *xdg != 0) {
    return fs::path(xdg) / "pkcs11" / "modules";
  }
  const char* home = std::getenv("HOME");
  if (home == nullptr || *home == 0) {
    throw CommandError(kExitFailure, "neither $XDG_CONFIG_HOME nor $HOME is set: no user p11-kit config to write");
  }
  return fs::path(home) / ".config" / "pkcs11" / "modules";
}

std::string trimmed(const std::string& text) {
  const auto first = text.find_first_not_of(" \t\r");
  if (first == std::string::npos) {
    return {};
  }
  return text.substr(first, text.find_last_not_of(" \t\r") - first + 1);
}

// A field of a p11-kit config file ("name: value" lines, '#' comments); nullopt when absent.
std::optional<std::string> configField(const fs::path& file, const std::string& name) {
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    line = trimmed(line);
    const auto colon = line.find(':');
    if (line.empty() || line[0] == '#' || colon == std::string::npos) {
      continue;
    }
    if (trimmed(line.substr(0, colon)) == name) {
      return trimmed(line.substr(colon + 1));
    }
  }
  return std::nullopt;
}

bool writtenByUs(const fs::path& file) {
  std::ifstream in(file);
  std::string first;
  std::getline(in, first);
  return first.rfind(kMarker, 0) == 0;
}

// The module config files (names only) whose `module:` loads `library`, in `directories`.
std::vector<std::string> filesLoading(const std::vector<fs::path>& directories, const std::string& library) {
  std::vector<std::string> names;
  for (const auto& directory : directories) {
    std::error_code error;
    for (const auto& entry : fs::directory_iterator(directory, error)) {
      const auto module = configField(entry.path(), "module");
      if (entry.path().extension() == ".module" && module && !module->empty() &&
          fs::path(*module).filename() == library) {
        names.push_back(entry.path().filename().string());
      }
    }
  }
  return names;
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
  const fs::path userDir = userModuleDir();
  const auto systemDirs = systemModuleDirs();
  std::vector<std::string> warnings;

  // Which route each system file is; the user files override them by name.
  const std::vector<std::pair<std::string, std::vector<std::string>>> routes = {
      {kOpenscModule, filesLoading(systemDirs, kOpenscModule)}, {kDojangModule, filesLoading(systemDirs, kDojangModule)}};
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
          throw CommandError(kExitFailure,
                             file.string() + " exists and was not written by dojang: edit or remove it yourself",
                             {{"file", file.string()}});
        }
        const std::string text = overrideText(options.keep, library);
        std::ifstream current(file);
        const std::string present((std::istreambuf_iterator<char>(current)), std::istreambuf_iterator<char>());
        changes.push_back({file, exists && present == text ? "unchanged" : "write", library});
      } else if (ours) {
        changes.push_back({file, "remove", library});
      }
    }
  }

  if (options.keep == "dojang" && routes[0].second.empty()) {
    warnings.push_back("OpenSC is not registered with p11-kit (no module file in " + systemDirs[0].string() +
                       " or " + systemDirs[1].string() + " loads " + kOpenscModule + "): cards have one route already");
  }
  if (options.keep == "opensc" && routes[1].second.empty()) {
    warnings.push_back(std::string("dojang's module is not registered with p11-kit (no module file in ") +
                       systemDirs[0].string() + " or " + systemDirs[1].string() + " loads " + kDojangModule +
                       "): p11-kit programs reach cards through OpenSC only already");
  }
  if (options.keep == "dojang" && routes[1].second.empty() && filesLoading({userDir}, kDojangModule).empty()) {
    warnings.push_back(std::string("dojang's module is not registered with p11-kit (no dojang.module loading ") +
                       kDojangModule + "): p11-kit programs see cards through neither route until it is "
                       "(meson install puts it in " + DOJANG_P11KIT_PACKAGE_MODULES + ")");
  }
  if (::geteuid() == 0) {
    warnings.push_back("p11-kit reads no user configuration in programs run as root: this changes what "
                       "programs of the user owning " + userDir.string() + " see, when not run as root");
  }
  if (const auto mode = configField(fs::path(DOJANG_P11KIT_SYSTEM_CONFIG), "user-config"); mode && *mode == "none") {
    warnings.push_back(std::string(DOJANG_P11KIT_SYSTEM_CONFIG) +
                       " says user-config: none, so p11-kit ignores the files written here");
  }

  CommandResult result;
  result.json = {{"keep", options.keep}, {"dryRun", options.dryRun}, {"userModules", userDir.string()},
                 {"changes", nlohmann::json::array()}, {"warnings", warnings}};
  std::ostringstream text;
  bool changed = false;
  for (const auto& change : changes) {
    if (!options.dryRun && change.action == "write") {
      writeAtomically(change.file, overrideText(options.keep, change.hides));
    } else if (!options.dryRun && change.action == "remove") {
      fs::remove(change.file);
    }
    changed = changed || change.action != "unchanged";
    result.json["changes"].push_back({{"file", change.file.string()}, {"action", change.action}, {"hides", change.hides}});
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
  const std::string outcome = options.keep == "both"   ? "p11-kit programs load both OpenSC and dojang (cards may appear twice)"
                              : options.keep == "dojang" ? "p11-kit programs reach cards through dojang only"
                                                         : "p11-kit programs reach cards through OpenSC only";
  text << (changed ? "" : "nothing to change: ") << outcome << (options.dryRun && changed ? " (after this is done)" : "")
       << '\n';
  result.text = text.str();
  return result;
}

}  // namespace dojang::cli
