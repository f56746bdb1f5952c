#include "src/cli/run_program.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "src/cli/commands.h"

extern char** environ;

namespace dojang::cli {

namespace {

// An open descriptor, closed once.
class FileDescriptor final {
 public:
  explicit FileDescriptor(int fd) noexcept : m_fd(fd) {}
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  ~FileDescriptor() {
    if (m_fd >= 0) {
      ::close(m_fd);
    }
  }
  [[nodiscard]] int get() const noexcept { return m_fd; }

 private:
  int m_fd;
};

class SpawnActions final {
 public:
  SpawnActions() { posix_spawn_file_actions_init(&m_actions); }
  SpawnActions(const SpawnActions&) = delete;
  SpawnActions& operator=(const SpawnActions&) = delete;
  ~SpawnActions() { posix_spawn_file_actions_destroy(&m_actions); }
  [[nodiscard]] posix_spawn_file_actions_t* get() noexcept { return &m_actions; }

 private:
  posix_spawn_file_actions_t m_actions{};
};

}  // namespace

ProgramOutput runProgram(const std::vector<std::string>& argv, std::chrono::seconds deadline) {
  // The output goes to an unlinked file, not a pipe: a daemon the program starts (the module's
  // dojangd autostart) may keep the descriptor open long after the program itself has exited.
  char pattern[] = "/tmp/dojang-output-XXXXXX";
  const FileDescriptor output(::mkostemp(pattern, O_CLOEXEC));
  if (output.get() < 0) {
    throw CommandError(kExitFailure, std::string("cannot create a temporary file: ") + std::strerror(errno));
  }
  ::unlink(pattern);

  SpawnActions actions;
  posix_spawn_file_actions_addopen(actions.get(), STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(actions.get(), output.get(), STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(actions.get(), output.get(), STDERR_FILENO);
  std::vector<char*> arguments;
  arguments.reserve(argv.size() + 1);
  for (const auto& argument : argv) {
    arguments.push_back(const_cast<char*>(argument.c_str()));
  }
  arguments.push_back(nullptr);

  pid_t pid = 0;
  if (const int error =
          ::posix_spawnp(&pid, argv.at(0).c_str(), actions.get(), nullptr, arguments.data(), environ);
      error != 0) {
    throw CommandError(kExitFailure, "cannot run " + argv[0] + ": " + std::strerror(error));
  }

  ProgramOutput result;
  const auto giveUp = std::chrono::steady_clock::now() + deadline;
  int status = 0;
  for (;;) {
    const pid_t done = ::waitpid(pid, &status, WNOHANG);
    if (done == pid || (done < 0 && errno != EINTR)) {
      break;
    }
    if (std::chrono::steady_clock::now() > giveUp) {
      ::kill(pid, SIGKILL);
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      result.output = argv[0] + " did not finish within " + std::to_string(deadline.count()) + " s\n";
      return result;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (WIFEXITED(status)) {
    result.exitCode = WEXITSTATUS(status);
  }
  char buffer[4096];
  ::lseek(output.get(), 0, SEEK_SET);
  for (;;) {
    const ssize_t got = ::read(output.get(), buffer, sizeof buffer);
    if (got < 0 && errno == EINTR) {
      continue;
    }
    if (got <= 0) {
      break;
    }
    result.output.append(buffer, static_cast<std::size_t>(got));
  }
  return result;
}

}  // namespace dojang::cli
