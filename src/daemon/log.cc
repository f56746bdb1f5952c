#include "src/daemon/log.h"

#include <atomic>
#include <cstdint>
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

// The length of the well-formed UTF-8 sequence at text[at] (RFC 3629: no overlong forms, no
// surrogates, nothing above U+10FFFF), or 0 when the byte there does not start one.
std::size_t utf8SequenceAt(std::string_view text, std::size_t at) {
  const auto byte = [&](std::size_t i) { return static_cast<std::uint8_t>(text[i]); };
  const std::uint8_t lead = byte(at);
  std::size_t length = 0;
  std::uint8_t low = 0x80;  // the range of the second byte, which excludes the bad forms
  std::uint8_t high = 0xBF;
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    low = lead == 0xE0 ? 0xA0 : 0x80;
    high = lead == 0xED ? 0x9F : 0xBF;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    low = lead == 0xF0 ? 0x90 : 0x80;
    high = lead == 0xF4 ? 0x8F : 0xBF;
  } else {
    return 0;
  }
  if (at + length > text.size() || byte(at + 1) < low || byte(at + 1) > high) {
    return 0;
  }
  for (std::size_t i = 2; i < length; ++i) {
    if (byte(at + i) < 0x80 || byte(at + i) > 0xBF) {
      return 0;
    }
  }
  // U+0080..U+009F (C1 controls) are well formed but steer some terminals all the same.
  return lead == 0xC2 && byte(at + 1) <= 0x9F ? 0 : length;
}

void appendHex(std::string& out, std::uint8_t byte) {
  constexpr const char* kDigits = "0123456789abcdef";
  out += "\\x";
  out += kDigits[byte >> 4];
  out += kDigits[byte & 0x0F];
}

void emit(int priority, const char* label, const std::string& message) {
  const std::string safe = escapeForLog(message);
  std::lock_guard lock(g_logMutex);
  if (toJournal()) {
    std::fprintf(stderr, "<%d>%s\n", priority, safe.c_str());
  } else {
    std::fprintf(stderr, "dojangd: %s%s\n", label, safe.c_str());
  }
  std::fflush(stderr);
}
}  // namespace

std::string escapeForLog(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t at = 0; at < text.size();) {
    const auto byte = static_cast<std::uint8_t>(text[at]);
    if (byte == '\\') {
      out += "\\\\";
      ++at;
    } else if (byte >= 0x20 && byte < 0x7F) {
      out += static_cast<char>(byte);
      ++at;
    } else if (byte == '\n' || byte == '\r' || byte == '\t') {
      out += byte == '\n' ? "\\n" : byte == '\r' ? "\\r" : "\\t";
      ++at;
    } else if (const std::size_t length = byte >= 0x80 ? utf8SequenceAt(text, at) : 0; length != 0) {
      out.append(text.substr(at, length));
      at += length;
    } else {
      appendHex(out, byte);
      ++at;
    }
  }
  return out;
}

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
