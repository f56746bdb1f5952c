#include "src/common/wire/socket_path.h"

#include <cstdlib>
#include <unistd.h>

namespace dojang::wire {

std::string defaultSocketPath() {
  if (const char* overridden = std::getenv("DOJANG_SOCKET"); overridden != nullptr && *overridden != 0) {
    return overridden;
  }
  std::string runtimeDir;
  if (const char* xdg = std::getenv("XDG_RUNTIME_DIR"); xdg != nullptr && *xdg != 0) {
    runtimeDir = xdg;
  } else {
    runtimeDir = "/run/user/" + std::to_string(::getuid());
  }
  return runtimeDir + "/dojang/pkcs11.sock";
}

}  // namespace dojang::wire
