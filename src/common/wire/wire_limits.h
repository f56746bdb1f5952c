// Hard limits on everything that crosses the socket. A frame that breaks one is malformed.
#pragma once

#include <cstddef>
#include <cstdint>

namespace dojang::wire {

inline constexpr std::size_t kMaxFrameBytes = 4u << 20;       // whole payload
inline constexpr std::size_t kMaxHelloFrameBytes = 8u << 10;  // a connection's first frame
inline constexpr std::size_t kMaxDataBytes = 3u << 20;        // data to sign, digest, decrypt
inline constexpr std::uint32_t kMaxListCount = 65536;         // handles, attributes, mechanisms
inline constexpr std::size_t kMaxStringBytes = 4096;          // labels, names, programs
inline constexpr std::size_t kMaxPinBytes = 256;
inline constexpr std::uint32_t kMaxRandomBytes = 1u << 20;
// Attributes in one template or attribute-type list (find, get, set, create, copy, generate).
// Well-formed frames may carry more; the daemon and the module refuse them as a request.
inline constexpr std::uint32_t kMaxTemplateAttributes = 256;

}  // namespace dojang::wire
