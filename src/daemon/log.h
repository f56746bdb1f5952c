// dojangd's log: stderr, with syslog priority prefixes when systemd's journal reads it.
#pragma once

#include <string>

namespace dojang::daemon {

void logInfo(const std::string& message);
void logWarning(const std::string& message);
void logError(const std::string& message);
void setVerbose(bool verbose);
void logDebug(const std::string& message);

}  // namespace dojang::daemon
