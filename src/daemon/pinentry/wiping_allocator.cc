#include "src/daemon/pinentry/wiping_allocator.h"

#include <malloc.h>

#include <cstdlib>
#include <cstring>

namespace dojang::daemon::pinentry {

namespace {

void* allocate(std::size_t size) {
  return std::malloc(size);
}

void release(void* block) {
  if (block != nullptr) {
    explicit_bzero(block, malloc_usable_size(block));
    std::free(block);
  }
}

// Never realloc in place: a block the C library moved would leave its old bytes unwiped.
void* reallocate(void* block, std::size_t size) {
  if (block == nullptr) {
    return allocate(size);
  }
  void* moved = allocate(size == 0 ? 1 : size);
  if (moved == nullptr) {
    return nullptr;
  }
  const std::size_t old = malloc_usable_size(block);
  std::memcpy(moved, block, old < size ? old : size);
  release(block);
  return moved;
}

struct assuan_malloc_hooks kHooks = {allocate, reallocate, release};

}  // namespace

assuan_malloc_hooks_t wipingMallocHooks() noexcept {
  return &kHooks;
}

}  // namespace dojang::daemon::pinentry
