// Where dojangd listens: $DOJANG_SOCKET, else $XDG_RUNTIME_DIR/dojang/pkcs11.sock, else
// /run/user/<uid>/dojang/pkcs11.sock. The directory is private to the user (0700).
#pragma once

#include <string>

namespace dojang::wire {

std::string defaultSocketPath();

}  // namespace dojang::wire
