// The scheduler's renewals run the same engine as a person's: `dojang renew --auto --json ...` as
// a child process (one engine, two callers; the engine never runs inside dojangd, whose own
// module refuses it). The child gets dojangd's environment without DOJANG_INSIDE_DAEMON, and with
// DOJANG_SOCKET naming this daemon and DOJANG_NO_AUTOSTART=1, so that it never starts another.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace dojang::daemon {

// The dojang CLI: `configured` (dojang_cli) if set, else `dojang` beside dojangd (installed in one
// bindir), else the build tree's src/cli/dojang, else the configured bindir's. nullopt when none
// is an executable file.
[[nodiscard]] std::optional<std::string> findDojangCli(const std::optional<std::string>& configured);

class RenewChild final {
 public:
  // Starts `program` with `arguments` (argv[1..]); throws dojang::Error when it cannot.
  RenewChild(const std::string& program, const std::vector<std::string>& arguments,
             const std::string& daemonSocket);
  // A child still running is ended (SIGTERM, then SIGKILL) and always reaped.
  ~RenewChild();
  RenewChild(const RenewChild&) = delete;
  RenewChild& operator=(const RenewChild&) = delete;

  // nullopt while it runs; then its exit status as a shell reports it (128 + signal).
  std::optional<int> poll();
  [[nodiscard]] std::chrono::steady_clock::duration age() const {
    return std::chrono::steady_clock::now() - m_started;
  }
  // What it wrote so far.
  [[nodiscard]] std::string standardOutput() const;
  [[nodiscard]] std::string standardError() const;

 private:
  pid_t m_pid = -1;
  int m_out = -1;  // memfds: no pipe to drain while it runs, no file left behind
  int m_err = -1;
  std::chrono::steady_clock::time_point m_started = std::chrono::steady_clock::now();
};

}  // namespace dojang::daemon
