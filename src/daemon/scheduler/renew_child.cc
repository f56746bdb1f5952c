#include "src/daemon/scheduler/renew_child.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string_view>
#include <thread>

#include "src/common/errors/error.h"
#include "src/common/spawn/spawn_setup.h"

extern char** environ;

namespace dojang::daemon {

namespace {

bool isExecutableFile(const std::filesystem::path& path) {
  std::error_code ignored;
  return std::filesystem::is_regular_file(path, ignored) && ::access(path.c_str(), X_OK) == 0;
}

int shellStatus(int status) {
  if (WIFEXITED(status)) {
    return WEXITSTATUS(status);
  }
  return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : -1;
}

std::string contentsOf(int fd) {
  std::string text;
  char buffer[4096];
  for (off_t at = 0;;) {
    const ssize_t got = ::pread(fd, buffer, sizeof buffer, at);
    if (got <= 0) {
      break;
    }
    text.append(buffer, static_cast<std::size_t>(got));
    at += got;
  }
  return text;
}

// dojangd's environment for the child, minus what would make it refuse to run or reach (or
// start) another daemon.
std::vector<std::string> childEnvironment(const std::string& daemonSocket) {
  std::vector<std::string> env;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    const std::string_view text(*entry);
    if (text.starts_with("DOJANG_INSIDE_DAEMON=") || text.starts_with("DOJANG_SOCKET=") ||
        text.starts_with("DOJANG_NO_AUTOSTART=")) {
      continue;
    }
    env.emplace_back(text);
  }
  env.push_back("DOJANG_SOCKET=" + daemonSocket);
  env.push_back("DOJANG_NO_AUTOSTART=1");
  return env;
}

}  // namespace

std::optional<std::string> findDojangCli(const std::optional<std::string>& configured) {
  if (configured) {
    return isExecutableFile(*configured) ? configured : std::nullopt;
  }
  std::error_code error;
  const auto self = std::filesystem::read_symlink("/proc/self/exe", error);
  std::vector<std::filesystem::path> candidates;
  if (!error) {
    candidates.push_back(self.parent_path() / "dojang");
    candidates.push_back(self.parent_path().parent_path() / "cli" / "dojang");  // build/src/daemon -> src/cli
  }
  candidates.push_back(std::filesystem::path(DOJANG_BINDIR) / "dojang");
  for (const auto& candidate : candidates) {
    if (isExecutableFile(candidate)) {
      return candidate.string();
    }
  }
  return std::nullopt;
}

RenewChild::RenewChild(const std::string& program, const std::vector<std::string>& arguments,
                       const std::string& daemonSocket) {
  m_out = ::memfd_create("dojang-renew-stdout", MFD_CLOEXEC);
  m_err = ::memfd_create("dojang-renew-stderr", MFD_CLOEXEC);
  if (m_out < 0 || m_err < 0) {
    const int saved = errno;
    if (m_out >= 0) {
      ::close(m_out);
    }
    if (m_err >= 0) {
      ::close(m_err);
    }
    m_out = m_err = -1;
    fail(CKR_HOST_MEMORY, std::string("memfd_create: ") + std::strerror(saved));
  }
  std::vector<std::string> args = {program};
  args.insert(args.end(), arguments.begin(), arguments.end());
  std::vector<char*> argv;
  for (auto& arg : args) {
    argv.push_back(arg.data());
  }
  argv.push_back(nullptr);
  auto env = childEnvironment(daemonSocket);
  std::vector<char*> envp;
  for (auto& entry : env) {
    envp.push_back(entry.data());
  }
  envp.push_back(nullptr);

  SpawnSetup setup;
  posix_spawn_file_actions_addopen(&setup.actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&setup.actions, m_out, STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&setup.actions, m_err, STDERR_FILENO);
  // dojangd blocks its stop signals (a thread takes them with sigwait) and ignores SIGPIPE; the
  // child must have neither.
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&setup.attributes, &none);
  sigset_t defaults;
  sigemptyset(&defaults);
  for (const int signal : {SIGPIPE, SIGTERM, SIGINT, SIGHUP}) {
    sigaddset(&defaults, signal);
  }
  posix_spawnattr_setsigdefault(&setup.attributes, &defaults);
  posix_spawnattr_setflags(&setup.attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t pid = -1;
  const int error =
      ::posix_spawn(&pid, program.c_str(), &setup.actions, &setup.attributes, argv.data(), envp.data());
  if (error != 0) {
    ::close(m_out);
    ::close(m_err);
    m_out = m_err = -1;
    fail(CKR_FUNCTION_FAILED, "cannot start " + program + ": " + std::strerror(error));
  }
  m_pid = pid;
}

RenewChild::~RenewChild() {
  if (m_pid > 0) {
    ::kill(m_pid, SIGTERM);
    // The engine's journal makes an interrupted renewal safe; a few seconds to end cleanly.
    for (int i = 0; i < 30 && m_pid > 0; ++i) {
      if (!poll()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
    if (m_pid > 0) {
      ::kill(m_pid, SIGKILL);
      int status = 0;
      while (::waitpid(m_pid, &status, 0) < 0 && errno == EINTR) {
      }
    }
  }
  if (m_out >= 0) {
    ::close(m_out);
  }
  if (m_err >= 0) {
    ::close(m_err);
  }
}

std::optional<int> RenewChild::poll() {
  if (m_pid <= 0) {
    return std::nullopt;
  }
  int status = 0;
  const pid_t done = ::waitpid(m_pid, &status, WNOHANG);
  if (done == m_pid) {
    m_pid = -1;
    return shellStatus(status);
  }
  if (done < 0 && errno == ECHILD) {
    m_pid = -1;  // reaped elsewhere: nothing to report but a failure
    return -1;
  }
  return std::nullopt;
}

std::string RenewChild::standardOutput() const {
  return contentsOf(m_out);
}

std::string RenewChild::standardError() const {
  return contentsOf(m_err);
}

}  // namespace dojang::daemon
