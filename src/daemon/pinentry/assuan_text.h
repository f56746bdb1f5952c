// Text in Assuan command lines (SETDESC, SETERROR, ...): percent-escaped, one line of at most
// 1000 bytes.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace dojang::daemon::pinentry {

// The longest Assuan line, without its LF (libassuan silently cuts longer ones, maybe mid-escape).
inline constexpr std::size_t kAssuanMaxLine = 1000;

// `command`, a space and `text` with '%', CR, LF and the other control bytes as %XX. UTF-8 bytes
// pass as they are. A text too long for one line is cut at a character boundary, never inside an
// escape or a UTF-8 sequence.
std::string assuanCommand(std::string_view command, std::string_view text);

// The escaped text alone (for D lines and OPTION values), cut to at most `limit` bytes likewise.
std::string percentEscape(std::string_view text, std::size_t limit);

}  // namespace dojang::daemon::pinentry
