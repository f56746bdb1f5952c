// A program running in the background for one test (dbus-daemon, dbus-monitor, OpenSSL's mock CMP
// server), its stdout and stderr to a file (or /dev/null); killed and reaped when the owner dies.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <optional>
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
  // False once the process has exited (it is then reaped and its status kept).
  [[nodiscard]] bool running();
  // SIGTERM, then SIGKILL when it has not exited after `grace`; reaps it. Returns the exit status,
  // or 128 + the signal number when a signal ended it. Later calls return the same status.
  int stop(std::chrono::milliseconds grace = std::chrono::seconds(5));

 private:
  static int decodeStatus(int status);
  pid_t m_pid = -1;
  std::optional<int> m_exitStatus;  // set once reaped
};

}  // namespace dojang::test
