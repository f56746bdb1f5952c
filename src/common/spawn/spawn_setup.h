// Owners for posix_spawn's attribute and file-action objects, for the daemon's children (the
// renewal child, pinentry): initialised together, destroyed together.
#pragma once

#include <spawn.h>

namespace dojang {

class SpawnSetup final {
 public:
  SpawnSetup() {
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attributes);
  }
  ~SpawnSetup() {
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attributes);
  }
  SpawnSetup(const SpawnSetup&) = delete;
  SpawnSetup& operator=(const SpawnSetup&) = delete;

  posix_spawn_file_actions_t actions{};
  posix_spawnattr_t attributes{};
};

}  // namespace dojang
