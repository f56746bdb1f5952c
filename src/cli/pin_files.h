// PINs that commands read from a file or a stream instead of a terminal (`--pin-file`,
// `--pin-stdin`): renew, enroll, reissue and `dojang pin`.
#pragma once

#include <istream>
#include <string>

#include "drivers/token/secure_bytes.h"

namespace dojang::cli {

// The first line, without its line end. Throws CommandError (usage) when it is empty; `source`
// names where it came from ("standard input", the file's path).
[[nodiscard]] SecureBytes readPinFromStream(std::istream& in, const std::string& source);

// The first line of the file at `path`, refused (usage) when the file cannot be read, when others
// may read it (it must be mode 0600 or stricter) or when it is empty. `what` names the secret in
// the messages: "PIN", "new PIN", "PUK".
[[nodiscard]] SecureBytes readPinFile(const std::string& path, const std::string& what = "PIN");

}  // namespace dojang::cli
