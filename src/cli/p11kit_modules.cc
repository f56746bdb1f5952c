#include "src/cli/p11kit_modules.h"

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <system_error>

#include "src/cli/commands.h"

namespace dojang::cli {

namespace fs = std::filesystem;

namespace {

std::string trimmed(const std::string& text) {
  const auto first = text.find_first_not_of(" \t\r");
  if (first == std::string::npos) {
    return {};
  }
  return text.substr(first, text.find_last_not_of(" \t\r") - first + 1);
}

}  // namespace

std::vector<fs::path> p11KitSystemModuleDirs() {
  return {DOJANG_P11KIT_PACKAGE_MODULES, DOJANG_P11KIT_SYSTEM_MODULES};
}

fs::path p11KitUserModuleDir() {
  if (const char* xdg = std::getenv("XDG_CONFIG_HOME"); xdg != nullptr && *xdg != 0) {
    return fs::path(xdg) / "pkcs11" / "modules";
  }
  const char* home = std::getenv("HOME");
  if (home == nullptr || *home == 0) {
    throw CommandError(kExitFailure,
                       "neither $XDG_CONFIG_HOME nor $HOME is set: no user p11-kit config to write");
  }
  return fs::path(home) / ".config" / "pkcs11" / "modules";
}

std::optional<std::string> p11KitConfigField(const fs::path& file, const std::string& name) {
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

std::vector<std::string> p11KitFilesLoading(const std::vector<fs::path>& directories,
                                            const std::string& library) {
  std::vector<std::string> names;
  for (const auto& directory : directories) {
    std::error_code error;
    for (const auto& entry : fs::directory_iterator(directory, error)) {
      const auto module = p11KitConfigField(entry.path(), "module");
      if (entry.path().extension() == ".module" && module && !module->empty() &&
          fs::path(*module).filename() == library) {
        names.push_back(entry.path().filename().string());
      }
    }
  }
  return names;
}

std::vector<fs::path> p11KitEnabledFilesLoading(const std::string& library) {
  std::vector<fs::path> directories = p11KitSystemModuleDirs();
  std::optional<fs::path> userDir;
  try {
    // p11-kit reads no user configuration in programs run as root.
    if (::geteuid() != 0) {
      userDir = p11KitUserModuleDir();
      directories.push_back(*userDir);
    }
  } catch (const CommandError&) {
    // No user config without a home: the system's files alone decide.
  }
  std::vector<fs::path> enabled;
  for (const auto& directory : directories) {
    for (const auto& name : p11KitFilesLoading({directory}, library)) {
      const fs::path file = directory / name;
      std::optional<std::string> enableIn;
      if (userDir && directory != *userDir) {
        enableIn = p11KitConfigField(*userDir / name, "enable-in");
      }
      if (!enableIn) {
        enableIn = p11KitConfigField(file, "enable-in");
      }
      if (!enableIn || !enableIn->empty()) {
        enabled.push_back(file);
      }
    }
  }
  return enabled;
}

}  // namespace dojang::cli
