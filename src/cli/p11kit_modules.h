// Reading p11-kit's module configs (pkcs11.conf(5)): where they are and which library each loads.
// Shared by `dojang setup p11-kit`, which writes user overrides, and `dojang setup-browser`,
// which must know whether p11-kit-proxy already brings dojang's module into a browser.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace dojang::cli {

// Where p11-kit reads module configs (p11-kit's pkg-config at build time): its package's, then
// the administrator's.
[[nodiscard]] std::vector<std::filesystem::path> p11KitSystemModuleDirs();

// ~/.config/pkcs11/modules, which p11-kit expands with $XDG_CONFIG_HOME when that is set.
// Throws CommandError when neither is set.
[[nodiscard]] std::filesystem::path p11KitUserModuleDir();

// A field of a p11-kit config file ("name: value" lines, '#' comments); nullopt when absent.
[[nodiscard]] std::optional<std::string> p11KitConfigField(const std::filesystem::path& file,
                                                           const std::string& name);

// The module config files (names only) whose `module:` loads `library`, in `directories`.
[[nodiscard]] std::vector<std::string> p11KitFilesLoading(
    const std::vector<std::filesystem::path>& directories, const std::string& library);

// The module files through which p11-kit (and so p11-kit-proxy.so) loads `library`: those of the
// system and the user whose effective `enable-in:` (the user's file first, as p11-kit merges
// them) is not empty; the user's files only when not run as root, as p11-kit reads them. Full
// paths of the files that name the library.
[[nodiscard]] std::vector<std::filesystem::path> p11KitEnabledFilesLoading(const std::string& library);

}  // namespace dojang::cli
