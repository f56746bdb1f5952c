#include "tests/support/run_command.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string_view>

extern char** environ;

namespace dojang::test {
namespace {

class Fd final {
 public:
  Fd() = default;
  explicit Fd(int fd) : m_fd(fd) {}
  ~Fd() { reset(); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd(Fd&& other) noexcept : m_fd(other.release()) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      reset(other.release());
    }
    return *this;
  }
  [[nodiscard]] int get() const noexcept { return m_fd; }
  int release() noexcept {
    const int fd = m_fd;
    m_fd = -1;
    return fd;
  }
  void reset(int fd = -1) noexcept {
    if (m_fd >= 0) {
      ::close(m_fd);
    }
    m_fd = fd;
  }

 private:
  int m_fd = -1;
};

struct Pipe {
  Fd read;
  Fd write;
};

Pipe makePipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    throw std::runtime_error(std::string("pipe2 failed: ") + std::strerror(errno));
  }
  return Pipe{Fd(fds[0]), Fd(fds[1])};
}

// Writes to a pipe whose reader may be gone without dying of SIGPIPE: the signal is blocked in
// this thread for the write and a pending one is consumed.
ssize_t writeNoSigpipe(int fd, std::string_view text) {
  sigset_t pipeSignal;
  sigset_t previous;
  sigemptyset(&pipeSignal);
  sigaddset(&pipeSignal, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipeSignal, &previous);
  const ssize_t written = ::write(fd, text.data(), text.size());
  const int savedErrno = errno;
  if (written < 0 && savedErrno == EPIPE) {
    const timespec zero{0, 0};
    while (sigtimedwait(&pipeSignal, nullptr, &zero) < 0 && errno == EINTR) {
    }
  }
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  errno = savedErrno;
  return written;
}

std::vector<std::string> mergedEnvironment(const std::map<std::string, std::string>& additions) {
  std::vector<std::string> result;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    const std::string_view text(*entry);
    const std::string name(text.substr(0, text.find('=')));
    if (additions.find(name) == additions.end()) {
      result.emplace_back(text);
    }
  }
  for (const auto& [name, value] : additions) {
    result.push_back(name + "=" + value);
  }
  return result;
}

std::vector<char*> pointers(std::vector<std::string>& strings) {
  std::vector<char*> result;
  result.reserve(strings.size() + 1);
  for (std::string& s : strings) {
    result.push_back(s.data());
  }
  result.push_back(nullptr);
  return result;
}

}  // namespace

CommandResult runCommand(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env) {
  CommandOptions options;
  options.env = env;
  return runCommand(argv, options);
}

CommandResult runCommand(const std::vector<std::string>& argv, const CommandOptions& options) {
  if (argv.empty()) {
    throw std::invalid_argument("runCommand: empty argv");
  }
  // Everything the child needs is prepared before fork(): after it, only exec-safe calls.
  std::vector<std::string> args(argv);
  std::vector<char*> argPointers = pointers(args);
  std::vector<std::string> environment = mergedEnvironment(options.env);
  std::vector<char*> envPointers = pointers(environment);
  const std::string workingDirectory = options.workingDirectory.string();

  Pipe in = makePipe();
  Pipe out = makePipe();
  Pipe err = makePipe();

  const pid_t child = ::fork();
  if (child < 0) {
    throw std::runtime_error(std::string("fork failed: ") + std::strerror(errno));
  }
  if (child == 0) {
    ::dup2(in.read.get(), STDIN_FILENO);
    ::dup2(out.write.get(), STDOUT_FILENO);
    ::dup2(err.write.get(), STDERR_FILENO);
    if (!workingDirectory.empty() && ::chdir(workingDirectory.c_str()) != 0) {
      constexpr std::string_view message = "runCommand: chdir failed\n";
      [[maybe_unused]] ssize_t ignored = ::write(STDERR_FILENO, message.data(), message.size());
      ::_exit(127);
    }
    ::execvpe(argPointers[0], argPointers.data(), envPointers.data());
    constexpr std::string_view message = "runCommand: exec failed: ";
    [[maybe_unused]] ssize_t ignored = ::write(STDERR_FILENO, message.data(), message.size());
    ignored = ::write(STDERR_FILENO, argPointers[0], std::strlen(argPointers[0]));
    ignored = ::write(STDERR_FILENO, "\n", 1);
    ::_exit(127);
  }

  in.read.reset();
  out.write.reset();
  err.write.reset();

  // Feed stdin and drain stdout/stderr together so that no pipe fills up and blocks the child.
  CommandResult result;
  std::string_view pendingInput = options.input;
  if (pendingInput.empty()) {
    in.write.reset();
  } else {
    ::fcntl(in.write.get(), F_SETFL, ::fcntl(in.write.get(), F_GETFL) | O_NONBLOCK);
  }
  const auto deadline = std::chrono::steady_clock::now() + options.timeout;
  char buffer[8192];
  while (out.read.get() >= 0 || err.read.get() >= 0) {
    pollfd fds[3] = {{out.read.get(), POLLIN, 0}, {err.read.get(), POLLIN, 0}, {in.write.get(), POLLOUT, 0}};
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left <= std::chrono::milliseconds::zero()) {
      ::kill(child, SIGKILL);
      result.timedOut = true;
      break;
    }
    const int ready = ::poll(fds, 3, static_cast<int>(left / std::chrono::milliseconds(1)));
    if (ready < 0 && errno != EINTR) {
      ::kill(child, SIGKILL);
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) {
        continue;
      }
      Fd& source = i == 0 ? out.read : err.read;
      std::string& sink = i == 0 ? result.out : result.err;
      const ssize_t got = ::read(source.get(), buffer, sizeof buffer);
      if (got > 0) {
        sink.append(buffer, static_cast<std::size_t>(got));
      } else if (got == 0 || errno != EINTR) {
        source.reset();
      }
    }
    if ((fds[2].revents & (POLLOUT | POLLERR | POLLHUP)) != 0) {
      const ssize_t written = writeNoSigpipe(in.write.get(), pendingInput);
      if (written > 0) {
        pendingInput.remove_prefix(static_cast<std::size_t>(written));
      }
      if ((written < 0 && errno != EAGAIN && errno != EINTR) || pendingInput.empty()) {
        in.write.reset();
      }
    }
  }
  in.write.reset();

  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) {
    result.exitCode = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.exitCode = 128 + WTERMSIG(status);
  }
  return result;
}

}  // namespace dojang::test
