// Shared by the PKCS#11 subcommands: load the module, and explain failures in a person's terms.
#pragma once

#include <functional>

#include "src/cli/commands.h"
#include "src/cli/module_path.h"
#include "src/cli/pkcs11_library.h"

namespace dojang::cli {

// Resolves and loads the module, runs body, and turns a failure of dojang's own module into
// "dojangd unreachable" (exit 3) when the daemon's socket does not answer.
CommandResult withModule(const ModuleOptions& options,
                         const std::function<CommandResult(const Pkcs11Library&)>& body);

[[nodiscard]] std::string hex(const Bytes& bytes);

}  // namespace dojang::cli
