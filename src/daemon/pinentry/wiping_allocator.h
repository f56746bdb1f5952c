// libassuan's allocator for pinentry contexts: every block it frees or moves is wiped first, so
// the PIN that passed through its line buffers (inside the context itself) does not linger.
#pragma once

#include <assuan.h>

namespace dojang::daemon::pinentry {

// Hooks for assuan_new_ext; they live for the whole program.
assuan_malloc_hooks_t wipingMallocHooks() noexcept;

}  // namespace dojang::daemon::pinentry
