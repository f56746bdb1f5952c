// Directories for the journal and its locks: only their owner may look inside.
#pragma once

#include <filesystem>

namespace dojang::renewal {

// Creates `directory` and its missing parents with mode 0700; existing ones are left as they are
// (~/.local belongs to the user's own policy). Throws dojang::Error when one cannot be made.
void createPrivateDirectories(const std::filesystem::path& directory);

}  // namespace dojang::renewal
