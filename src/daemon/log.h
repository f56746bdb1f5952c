// dojangd's log: stderr, with syslog priority prefixes when systemd's journal reads it. Every
// message is escaped on the way out (escapeForLog), so text a client sent can never start a
// line of its own.
#pragma once

#include <string>
#include <string_view>

namespace dojang::daemon {

void logInfo(const std::string& message);
void logWarning(const std::string& message);
void logError(const std::string& message);
void setVerbose(bool verbose);
void logDebug(const std::string& message);

// The text with control characters (C0, DEL, C1) as \n, \r, \t or \xHH, a backslash as \\, and
// each byte that is not part of valid UTF-8 as \xHH. Valid UTF-8, Korean included, is kept.
[[nodiscard]] std::string escapeForLog(std::string_view text);

}  // namespace dojang::daemon
