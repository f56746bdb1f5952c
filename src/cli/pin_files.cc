#include "src/cli/pin_files.h"

#include <sys/stat.h>

#include <algorithm>
#include <fstream>

#include "src/cli/commands.h"

namespace dojang::cli {

SecureBytes readPinFromStream(std::istream& in, const std::string& source) {
  std::string pin;
  std::getline(in, pin);
  while (!pin.empty() && (pin.back() == '\r' || pin.back() == '\n')) {
    pin.pop_back();
  }
  SecureBytes result(pin);
  std::fill(pin.begin(), pin.end(), '\0');
  if (result.empty()) {
    throw CommandError(kExitUsage, "no PIN in " + source);
  }
  return result;
}

SecureBytes readPinFile(const std::string& path, const std::string& what) {
  struct stat status {};
  if (::stat(path.c_str(), &status) != 0) {
    throw CommandError(kExitUsage, "cannot read the " + what + " file " + path);
  }
  if ((status.st_mode & 077) != 0) {
    throw CommandError(kExitUsage, "the " + what + " file " + path +
                                       " is readable by others; make it mode 0600 (chmod 600)");
  }
  std::ifstream file(path);
  if (!file) {
    throw CommandError(kExitUsage, "cannot read the " + what + " file " + path);
  }
  return readPinFromStream(file, path);
}

}  // namespace dojang::cli
