#include "src/renewal/journal/private_directory.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "src/common/errors/error.h"

namespace dojang::renewal {

void createPrivateDirectories(const std::filesystem::path& directory) {
  if (directory.empty()) {
    return;  // a bare file name: the working directory
  }
  std::filesystem::path prefix;
  for (const std::filesystem::path& component : directory) {
    prefix /= component;
    // std::filesystem::create_directories would use 0777 less the umask.
    if (mkdir(prefix.c_str(), 0700) != 0 && errno != EEXIST) {
      throw Error(CKR_FUNCTION_FAILED, ErrorKind::Fatal,
                  "cannot create directory " + prefix.string() + ": " + std::strerror(errno));
    }
  }
  std::error_code ignored;
  if (!std::filesystem::is_directory(directory, ignored)) {
    throw Error(CKR_FUNCTION_FAILED, ErrorKind::Fatal, directory.string() + " is not a directory");
  }
}

}  // namespace dojang::renewal
