#include "src/cli/module_path.h"

#include <cstdlib>
#include <filesystem>
#include <system_error>

#ifndef DOJANG_LIBDIR
#error "DOJANG_LIBDIR must be defined by the build"
#endif

namespace dojang::cli {

namespace {
constexpr const char* kModuleName = "dojang-pkcs11.so";

// build/src/cli/dojang -> build/pkcs11/dojang-pkcs11.so
std::optional<std::string> buildTreeModule() {
  std::error_code error;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", error);
  if (error) {
    return std::nullopt;
  }
  const auto candidate = (exe.parent_path() / ".." / ".." / "pkcs11" / kModuleName).lexically_normal();
  if (std::filesystem::exists(candidate, error)) {
    return candidate.string();
  }
  return std::nullopt;
}
}  // namespace

ModuleChoice resolveModulePath(const std::optional<std::string>& flag) {
  if (flag && !flag->empty()) {
    return {*flag, "--module"};
  }
  if (const char* env = std::getenv("DOJANG_MODULE"); env != nullptr && *env != '\0') {
    return {env, "DOJANG_MODULE"};
  }
  if (auto built = buildTreeModule()) {
    return {*built, "build tree"};
  }
  return {std::string(DOJANG_LIBDIR) + "/pkcs11/" + kModuleName, "installed"};
}

}  // namespace dojang::cli
