// A program running in the background for one test (dbus-daemon, dbus-monitor, OpenSSL's mock CMP
// server), its stdout and stderr to a file (or /dev/null); killed and reaped when the owner dies.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <string>
#include <vector>

namespace dojang::test {

class BackgroundProcess final {
 public:
  // argv[0] is looked up in PATH. Throws std::runtime_error when it cannot be started.
  explicit BackgroundProcess(std::vector<std::string> argv,
                             const std::filesystem::path& output = "/dev/null");
  ~BackgroundProcess();
  BackgroundProcess(const BackgroundProcess&) = delete;
  BackgroundProcess& operator=(const BackgroundProcess&) = delete;

  [[nodiscard]] pid_t pid() const noexcept { return m_pid; }

 private:
  pid_t m_pid = -1;
};

}  // namespace dojang::test
