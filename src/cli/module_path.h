// Which PKCS#11 module the CLI loads: --module, else $DOJANG_MODULE, else the build tree's
// dojang-pkcs11.so next to this executable, else the installed one.
#pragma once

#include <optional>
#include <string>

namespace dojang::cli {

struct ModuleChoice {
  std::string path;
  std::string source;  // "--module", "DOJANG_MODULE", "build tree", "installed"
};

[[nodiscard]] ModuleChoice resolveModulePath(const std::optional<std::string>& flag);

}  // namespace dojang::cli
