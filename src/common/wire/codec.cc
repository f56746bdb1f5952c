#include "src/common/wire/codec.h"

#include <cstring>

namespace dojang::wire {

namespace {
void wipeMemory(void* data, std::size_t size) noexcept {
  if (size != 0) {
    explicit_bzero(data, size);
  }
}
}  // namespace

void wipe(Bytes& buffer) noexcept { wipeMemory(buffer.data(), buffer.capacity()); }

void wipe(std::string& buffer) noexcept {
  // Bytes past size() but within capacity() may hold an older, longer value.
  const std::size_t size = buffer.size();
  buffer.resize(buffer.capacity());
  wipeMemory(buffer.data(), buffer.size());
  buffer.resize(size);
}

void prepareFrame(Bytes& frame, std::size_t size) {
  if (frame.capacity() < size) {
    wipe(frame);
    Bytes larger;
    larger.reserve(size);
    frame.swap(larger);  // `larger` now holds the old, wiped buffer and frees it
  }
  frame.clear();
}

const char* callName(std::uint16_t id) noexcept {
  switch (id) {
#define DOJANG_WIRE_CALL_NAME(number, name, request, reply) \
  case number:                                               \
    return #name;
    DOJANG_WIRE_CALLS(DOJANG_WIRE_CALL_NAME)
#undef DOJANG_WIRE_CALL_NAME
    default:
      return "unknown";
  }
}

}  // namespace dojang::wire
