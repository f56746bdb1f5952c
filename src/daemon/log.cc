#include "log.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>

namespace dojang::daemon {

namespace {
std::mutex g_logMutex;
std::atomic<bool> g_verbose{false};

// Under systemd, stderr is the journal and "<N>" sets the priority (sd-daemon(3)).
bool toJournal() {
  static const bool journal = std::getenv("JOURNAL_STREAM") != nullptr;
  return journal;
}

void emit(int priority, const char* label, const std::string& message) {
  std::lock_guard lock(g_logMutex);
  if (toJournal()) {
    std::fprintf(stderr, "<%d>%s\n", priority, message.c_str());
  } else {
    std::fprintf(stderr, "dojangd: %s%s\n", label, message.c_str());
  }
  std::fflush(stderr);
}
}  // namespace

void logInfo(const std::string& message) { emit(6, "", message); }
void logWarning(const std::string& message) { emit(4, "warning: ", message); }
void logError(const std::string& message) { emit(3, "error: ", message); }
void setVerbose(bool verbose) { g_verbose = verbose; }
void logDebug(const std::string& message) {
  if (g_verbose) {
    emit(7, "debug: ", message);
  }
}

}  // namespace dojang::daemon
