// A real dojangd for one integration test: its own directory (socket, config, log), serving the
// SoftHSM token it was given, started in the foreground with -v and stopped when the owner dies.
// The binary comes from $DOJANGD (set by meson test).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <optional>
#include <string>

#include "src/common/cryptoki/cryptoki.h"
#include "tests/support/softhsm_token.h"
#include "tests/support/temp_dir.h"

namespace dojang::test {

// $DOJANGD; throws std::runtime_error when it is not set.
std::string dojangdExecutable();
// $DOJANG_MODULE (dojang-pkcs11.so in the build tree); throws std::runtime_error when not set.
std::string dojangModulePath();

// Tests run their tokens in application mode (C_Login with the PIN, as every client test does)
// unless they ask for dojangd's PIN prompts.
inline constexpr const char* kApplicationPinMode = "mode = \"application\"";

// The TOML that makes dojangd load SoftHSM with the token's SOFTHSM2_CONF; daemonSettings are
// lines for its [daemon] table (e.g. "max_connections = 20"), pinSettings for its [pin] table.
std::string dojangdConfigFor(const SoftHsmToken& token, const std::string& daemonSettings = {},
                             const std::string& pinSettings = kApplicationPinMode);

// The slot whose token carries this label; throws std::runtime_error when none does.
CK_SLOT_ID slotWithLabel(CK_FUNCTION_LIST& p11, const std::string& label);

// More for a DojangdProcess than the backend: [daemon] lines, more TOML (a [renewal] table) and
// environment for dojangd (added to, or replacing, the test's own).
struct DojangdOptions {
  std::string daemonSettings;
  std::string extraConfig;
  std::map<std::string, std::string> env;
  std::string pinSettings = kApplicationPinMode;  // lines of the [pin] table
};

class DojangdProcess final {
 public:
  static constexpr std::chrono::seconds kStartPatience{10};
  static constexpr std::chrono::seconds kStopPatience{10};

  // Writes <dir>/dojangd.toml and starts dojangd on <dir>/sock; returns once the socket accepts
  // connections. Throws std::runtime_error (with the log) when it does not come up.
  // dojangd's renewal state goes to <dir>/state (XDG_STATE_HOME) and it has no session bus
  // (DBUS_SESSION_BUS_ADDRESS names a missing socket) unless `options.env` says otherwise: a test's
  // daemon never writes to the user's files nor shows notices on the user's desktop.
  explicit DojangdProcess(const SoftHsmToken& token, const std::string& daemonSettings = {});
  DojangdProcess(const SoftHsmToken& token, const DojangdOptions& options);
  ~DojangdProcess();  // SIGKILL if still running
  DojangdProcess(const DojangdProcess&) = delete;
  DojangdProcess& operator=(const DojangdProcess&) = delete;
  DojangdProcess(DojangdProcess&&) = delete;
  DojangdProcess& operator=(DojangdProcess&&) = delete;

  // SIGTERM, then waits (at most kStopPatience, then SIGKILL). Returns the exit status as a shell
  // reports it (128 + signal when killed); 0 is a clean stop.
  int stop();
  // SIGKILL and reap: no chance to clean up (the socket file stays behind).
  void kill9();
  // Starts again on the same socket and config, after stop() or kill9().
  void restart();

  [[nodiscard]] bool running() const noexcept { return m_pid > 0; }
  [[nodiscard]] pid_t pid() const noexcept { return m_pid; }
  // Everything dojangd wrote to stderr so far, across restarts.
  [[nodiscard]] std::string log() const;
  [[nodiscard]] const std::filesystem::path& directory() const noexcept { return m_dir.path(); }
  [[nodiscard]] std::filesystem::path socketPath() const { return m_dir / "sock"; }
  [[nodiscard]] std::filesystem::path configPath() const { return m_dir / "dojangd.toml"; }
  [[nodiscard]] std::filesystem::path logPath() const { return m_dir / "dojangd.log"; }
  // What a client needs: DOJANG_SOCKET, DOJANG_NO_AUTOSTART=1, SOFTHSM2_CONF.
  [[nodiscard]] std::map<std::string, std::string> env() const;
  // Points this process's own environment at the daemon (for a module loaded in-process).
  void exportEnv() const;

 private:
  void start();
  // Waits for the child; returns its shell-style status, or nullopt when it is still running
  // at the deadline.
  std::optional<int> reap(std::chrono::milliseconds patience);

  TempDir m_dir;
  std::filesystem::path m_softhsmConf;
  std::map<std::string, std::string> m_env;
  pid_t m_pid = -1;
};

// dojang-pkcs11.so loaded into this process with dlopen: the function list, C_Initialize on
// request, and C_Finalize (if this process initialised it and did not finalise) and dlclose when
// the owner dies. Point the environment at a daemon (DojangdProcess::exportEnv) first.
class DojangModule final {
 public:
  // Throws std::runtime_error when the module cannot be loaded or has no function list.
  explicit DojangModule(const std::string& path = dojangModulePath());
  ~DojangModule();
  DojangModule(const DojangModule&) = delete;
  DojangModule& operator=(const DojangModule&) = delete;
  DojangModule(DojangModule&&) = delete;
  DojangModule& operator=(DojangModule&&) = delete;

  // C_Initialize with CKF_OS_LOCKING_OK.
  CK_RV initialize();
  CK_RV finalize();
  [[nodiscard]] CK_FUNCTION_LIST& functions() const noexcept { return *m_functions; }
  CK_FUNCTION_LIST* operator->() const noexcept { return m_functions; }
  // After fork(), a child that must not touch the parent's state on exit (it _exit()s anyway).
  void forgetInChild() noexcept { m_initializedBy = -1; }

 private:
  void* m_handle = nullptr;
  CK_FUNCTION_LIST* m_functions = nullptr;
  pid_t m_initializedBy = -1;
};

}  // namespace dojang::test
