#include "src/cli/module_command.h"

#include <filesystem>

#include "src/common/cryptoki/hex_text.h"
#include "src/common/errors/error.h"
#include "src/common/wire/socket_path.h"
#include "src/common/wire/transport.h"

namespace dojang::cli {

namespace {
bool isDojangModule(const std::string& path) {
  return std::filesystem::path(path).filename() == "dojang-pkcs11.so";
}

// Called after the dojang module failed: is the cause that dojangd cannot be reached?
void explainUnreachableDaemon(const std::string& failure) {
  const std::string socket = wire::defaultSocketPath();
  try {
    (void)wire::connectUnixSocket(socket);
  } catch (const wire::TransportClosed& error) {
    throw CommandError(kExitDaemonUnreachable,
                       "dojangd unreachable at " + socket + " (" + error.what() + "); module said: " + failure,
                       {{"socket", socket}});
  }
}
}  // namespace

CommandResult withModule(const ModuleOptions& options,
                         const std::function<CommandResult(const Pkcs11Library&)>& body) {
  const ModuleChoice choice = resolveModulePath(options.module);
  std::error_code error;
  if (!std::filesystem::exists(choice.path, error)) {
    throw CommandError(kExitFailure,
                       "PKCS#11 module not found: " + choice.path + " (from " + choice.source +
                           "); pass --module PATH or set DOJANG_MODULE",
                       {{"module", choice.path}});
  }
  try {
    Pkcs11Library library(choice.path);
    return body(library);
  } catch (const dojang::Error& failure) {
    if (isDojangModule(choice.path)) {
      explainUnreachableDaemon(failure.what());
    }
    throw CommandError(kExitFailure, failure.what(), {{"module", choice.path}});
  }
}

std::string hex(const Bytes& bytes) { return hexText(bytes); }

}  // namespace dojang::cli
