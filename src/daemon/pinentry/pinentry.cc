#include "src/daemon/pinentry/pinentry.h"

#include <assuan.h>
#include <fcntl.h>
#include <gpg-error.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <span>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "src/common/spawn/spawn_setup.h"
#include "src/daemon/pinentry/assuan_text.h"
#include "src/daemon/pinentry/wiping_allocator.h"

extern char** environ;

namespace dojang::daemon::pinentry {

namespace {

using Clock = std::chrono::steady_clock;

// Longer than any PIN or passphrase; the buffer is wiped, never grown (growing would copy).
constexpr std::size_t kMaxPinBytes = 2048;
// A pinentry told BYE (or whose stdin closed) exits at once; one that was interrupted gets
// SIGTERM (pinentry-curses then restores the terminal) and this long before SIGKILL.
constexpr auto kExitGrace = std::chrono::milliseconds(1000);
constexpr auto kTermGrace = std::chrono::milliseconds(500);

PromptResult failed(std::string detail) {
  PromptResult result;
  result.outcome = PromptOutcome::Failed;
  result.detail = std::move(detail);
  return result;
}

PromptResult ended(PromptOutcome outcome) {
  PromptResult result;
  result.outcome = outcome;
  return result;
}

bool isExecutableFile(const std::string& path) {
  struct stat info {};
  return ::stat(path.c_str(), &info) == 0 && S_ISREG(info.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

std::optional<std::string> findProgram(const std::string& program) {
  if (program.empty()) {
    return std::nullopt;
  }
  if (program.find('/') != std::string::npos) {
    return isExecutableFile(program) ? std::optional<std::string>(program) : std::nullopt;
  }
  const char* pathVariable = std::getenv("PATH");
  const std::string_view path = pathVariable != nullptr ? pathVariable : "/usr/local/bin:/usr/bin:/bin";
  for (std::size_t at = 0; at <= path.size();) {
    const std::size_t end = std::min(path.find(':', at), path.size());
    const std::string_view directory = path.substr(at, end - at);
    if (!directory.empty()) {
      std::string candidate(directory);
      candidate += '/';
      candidate += program;
      if (isExecutableFile(candidate)) {
        return candidate;
      }
    }
    at = end + 1;
  }
  return std::nullopt;
}

// A value fit for an OPTION line or an argv entry: Assuan does not unescape OPTION values, so
// one with a control character (a forged second line) is not sent at all.
bool plainValue(std::string_view value) {
  for (const char c : value) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return false;
    }
  }
  return !value.empty() && value.size() < 512;
}

// dojangd's environment with the request's surface instead of dojangd's own.
std::vector<std::string> childEnvironment(const PromptRequest& request) {
  const std::pair<std::string_view, const std::string*> surface[] = {
      {"DISPLAY", &request.display},
      {"WAYLAND_DISPLAY", &request.waylandDisplay},
      {"XAUTHORITY", &request.xauthority},
  };
  std::vector<std::string> env;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    const std::string_view text(*entry);
    bool replaced = false;
    for (const auto& [name, value] : surface) {
      replaced =
          replaced || (text.starts_with(name) && text.size() > name.size() && text[name.size()] == '=');
    }
    if (!replaced) {
      env.emplace_back(text);
    }
  }
  for (const auto& [name, value] : surface) {
    if (plainValue(*value)) {
      env.push_back(std::string(name) + "=" + *value);
    }
  }
  return env;
}

std::string describeStatus(int status) {
  if (WIFEXITED(status)) {
    return "exited with status " + std::to_string(WEXITSTATUS(status));
  }
  if (WIFSIGNALED(status)) {
    return "was killed by signal " + std::to_string(WTERMSIG(status));
  }
  return "ended";
}

enum class Interruption : std::uint8_t { None, Canceled, TimedOut };

// One pinentry child and the Assuan context that speaks to it. libassuan reaches the child only
// through the system hooks below: our spawn (posix_spawn, all other descriptors closed, default
// signals, our environment), CLOEXEC pipes, and a read that also waits for cancel() and the
// deadline. The destructor releases the context (wiping its buffers) and reaps the child.
class Session final {
 public:
  Session(int wakeFd, const std::atomic<bool>& canceled, std::optional<Clock::time_point> deadline,
          std::vector<std::string> env)
      : m_wakeFd(wakeFd), m_canceled(canceled), m_deadline(deadline), m_env(std::move(env)) {}
  ~Session() {
    release();
    reap(m_interruption == Interruption::None ? kExitGrace : std::chrono::milliseconds(0));
    explicit_bzero(m_pin.data(), m_pin.size());
  }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  gpg_error_t connect(const std::string& program, const std::vector<std::string>& arguments) {
    gpg_error_t error =
        assuan_new_ext(&m_context, GPG_ERR_SOURCE_DEFAULT, wipingMallocHooks(), nullptr, nullptr);
    if (error != 0) {
      m_context = nullptr;
      return error;
    }
    assuan_set_pointer(m_context, this);
    static struct assuan_system_hooks hooks = {ASSUAN_SYSTEM_HOOKS_VERSION,
                                               __assuan_usleep,
                                               pipeHook,
                                               __assuan_close,
                                               readHook,
                                               __assuan_write,
                                               __assuan_recvmsg,
                                               __assuan_sendmsg,
                                               spawnHook,
                                               __assuan_waitpid,
                                               __assuan_socketpair,
                                               __assuan_socket,
                                               __assuan_connect};
    assuan_ctx_set_system_hooks(m_context, &hooks);
    // We reap the child ourselves, after killing it if it does not leave.
    assuan_set_flag(m_context, ASSUAN_NO_WAITPID, 1);
    std::vector<const char*> argv;
    for (const auto& argument : arguments) {
      argv.push_back(argument.c_str());
    }
    argv.push_back(nullptr);
    return assuan_pipe_connect(m_context, program.c_str(), argv.data(), nullptr, nullptr, nullptr, 0);
  }

  gpg_error_t command(const std::string& line) {
    return assuan_transact(m_context, line.c_str(), nullptr, nullptr, nullptr, nullptr, nullptr, nullptr);
  }

  // GETPIN, its D lines straight into the wiped buffer; logging is off for these contexts, and
  // the confidential flag keeps it off should that change.
  gpg_error_t getPin() {
    assuan_begin_confidential(m_context);
    const gpg_error_t error =
        assuan_transact(m_context, "GETPIN", pinData, this, nullptr, nullptr, nullptr, nullptr);
    assuan_end_confidential(m_context);
    return m_pinTooLong ? gpg_error(GPG_ERR_TOO_LARGE) : error;
  }

  SecureBytes takePin() {
    SecureBytes pin(std::span<const std::uint8_t>(m_pin.data(), m_pinSize));
    explicit_bzero(m_pin.data(), m_pin.size());
    m_pinSize = 0;
    return pin;
  }

  [[nodiscard]] Interruption interruption() const noexcept { return m_interruption; }

  // Why the conversation broke: the child's exit, else what libassuan said.
  std::string whatHappened(const std::string& program, const char* during, gpg_error_t error) {
    if (m_spawnError != 0) {
      return "cannot start pinentry " + program + ": " + std::strerror(m_spawnError);
    }
    release();
    reap(std::chrono::milliseconds(200));
    std::string detail = "pinentry " + program;
    if (m_status) {
      detail += " " + describeStatus(*m_status) + " " + during;
    } else {
      detail += std::string(" failed ") + during;
    }
    if (error != 0) {
      char text[256] = {};
      gpg_strerror_r(error, text, sizeof text);
      detail += std::string(": ") + text;
    }
    return detail;
  }

 private:
  void release() noexcept {
    if (m_context != nullptr) {
      assuan_release(m_context);  // says BYE and closes the pipes
      m_context = nullptr;
    }
  }

  // Waits up to `grace` for the child to leave by itself, then SIGTERM, then SIGKILL.
  void reap(std::chrono::milliseconds grace) noexcept {
    if (m_pid <= 0 || m_status) {
      return;
    }
    if (waitFor(grace)) {
      return;
    }
    ::kill(m_pid, SIGTERM);
    if (waitFor(kTermGrace)) {
      return;
    }
    ::kill(m_pid, SIGKILL);
    int status = 0;
    while (::waitpid(m_pid, &status, 0) < 0 && errno == EINTR) {
    }
    m_status = status;
  }

  bool waitFor(std::chrono::milliseconds grace) noexcept {
    const auto until = Clock::now() + grace;
    for (;;) {
      int status = 0;
      const pid_t done = ::waitpid(m_pid, &status, WNOHANG);
      if (done == m_pid || (done < 0 && errno != EINTR)) {
        m_status = done == m_pid ? status : 0;
        return true;
      }
      if (Clock::now() >= until) {
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }

  static Session& of(assuan_context_t context) { return *static_cast<Session*>(assuan_get_pointer(context)); }

  static int pipeHook(assuan_context_t, assuan_fd_t fds[2], int) { return ::pipe2(fds, O_CLOEXEC); }

  static ssize_t readHook(assuan_context_t context, assuan_fd_t fd, void* buffer, size_t size) {
    Session& self = of(context);
    for (;;) {
      if (self.m_canceled.load()) {
        self.m_interruption = Interruption::Canceled;
        errno = ECANCELED;
        return -1;
      }
      int waitMs = -1;
      if (self.m_deadline) {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(*self.m_deadline - Clock::now()).count();
        if (left <= 0) {
          self.m_interruption = Interruption::TimedOut;
          errno = ETIMEDOUT;
          return -1;
        }
        waitMs = static_cast<int>(std::min<long long>(left, 60'000));
      }
      struct pollfd fds[2] = {{fd, POLLIN, 0}, {self.m_wakeFd, POLLIN, 0}};
      const int ready = ::poll(fds, 2, waitMs);
      if (ready < 0 && errno != EINTR) {
        return -1;
      }
      if (ready > 0 && fds[0].revents != 0 && !self.m_canceled.load()) {
        const ssize_t got = ::read(fd, buffer, size);
        if (got >= 0 || errno != EINTR) {
          return got;
        }
      }
    }
  }

  static int spawnHook(assuan_context_t context, pid_t* pid, const char* name, const char** argv,
                       assuan_fd_t fdIn, assuan_fd_t fdOut, assuan_fd_t*, void (*)(void*, int), void*,
                       unsigned int) {
    Session& self = of(context);
    if (name == nullptr) {
      errno = EINVAL;  // libassuan's fork-without-exec mode; never asked for here
      return -1;
    }
    // Copies above stderr, so that putting one pipe end on 0 cannot clobber the other.
    const int in = ::fcntl(fdIn, F_DUPFD_CLOEXEC, 3);
    const int out = ::fcntl(fdOut, F_DUPFD_CLOEXEC, 3);
    std::vector<char*> envp;
    for (auto& entry : self.m_env) {
      envp.push_back(entry.data());
    }
    envp.push_back(nullptr);
    int error = in < 0 || out < 0 ? errno : 0;
    if (error == 0) {
      SpawnSetup setup;
      posix_spawn_file_actions_adddup2(&setup.actions, in, STDIN_FILENO);
      posix_spawn_file_actions_adddup2(&setup.actions, out, STDOUT_FILENO);
      posix_spawn_file_actions_addopen(&setup.actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
      // None of dojangd's sockets, tokens or other prompts' pipes reach the pinentry.
      posix_spawn_file_actions_addclosefrom_np(&setup.actions, 3);
      // dojangd blocks its stop signals and ignores SIGPIPE; the pinentry must have neither.
      sigset_t none;
      sigemptyset(&none);
      posix_spawnattr_setsigmask(&setup.attributes, &none);
      sigset_t all;
      sigfillset(&all);
      posix_spawnattr_setsigdefault(&setup.attributes, &all);
      posix_spawnattr_setflags(&setup.attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
      error = ::posix_spawn(pid, name, &setup.actions, &setup.attributes, const_cast<char* const*>(argv),
                            envp.data());
    }
    for (const int fd : {in, out}) {
      if (fd >= 0) {
        ::close(fd);
      }
    }
    if (error != 0) {
      self.m_spawnError = error;
      errno = error;
      return -1;
    }
    self.m_pid = *pid;
    return 0;
  }

  static gpg_error_t pinData(void* opaque, const void* data, size_t size) {
    Session& self = *static_cast<Session*>(opaque);
    if (size > self.m_pin.size() - self.m_pinSize) {
      self.m_pinTooLong = true;
      return gpg_error(GPG_ERR_TOO_LARGE);
    }
    std::memcpy(self.m_pin.data() + self.m_pinSize, data, size);
    self.m_pinSize += size;
    return 0;
  }

  const int m_wakeFd;
  const std::atomic<bool>& m_canceled;
  const std::optional<Clock::time_point> m_deadline;
  std::vector<std::string> m_env;
  assuan_context_t m_context = nullptr;
  pid_t m_pid = -1;
  std::optional<int> m_status;  // set once reaped
  int m_spawnError = 0;
  Interruption m_interruption = Interruption::None;
  std::array<std::uint8_t, kMaxPinBytes> m_pin{};
  std::size_t m_pinSize = 0;
  bool m_pinTooLong = false;
};

PromptResult interrupted(Interruption interruption) {
  return ended(interruption == Interruption::TimedOut ? PromptOutcome::TimedOut : PromptOutcome::Canceled);
}

}  // namespace

bool hasSurface(const PromptRequest& request) {
  return !request.display.empty() || !request.waylandDisplay.empty() || !request.tty.empty();
}

Prompt::Prompt(PromptRequest request)
    : m_request(std::move(request)), m_wakeFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

Prompt::~Prompt() {
  if (m_wakeFd >= 0) {
    ::close(m_wakeFd);
  }
}

void Prompt::cancel() noexcept {
  if (!m_canceled.exchange(true) && m_wakeFd >= 0) {
    const std::uint64_t one = 1;
    (void)!::write(m_wakeFd, &one, sizeof one);
  }
}

PromptResult Prompt::run() {
  if (m_ran.exchange(true)) {
    return failed("this prompt has already run");
  }
  if (!hasSurface(m_request)) {
    return failed("no display or tty to ask on");
  }
  if (m_canceled.load()) {
    return ended(PromptOutcome::Canceled);
  }
  if (m_wakeFd < 0) {
    return failed("cannot create an eventfd for the prompt");
  }
  const auto program = findProgram(m_request.program);
  if (!program) {
    return failed("pinentry not found: " + m_request.program);
  }

  std::vector<std::string> argv = {*program};
  std::vector<std::string> options;
  const std::pair<const char*, const std::string*> surface[] = {
      {"display", &m_request.display},
      {"ttyname", &m_request.tty},
      {"ttytype", &m_request.ttyType},
      {"lc-ctype", &m_request.lcCtype},
  };
  for (const auto& [name, value] : surface) {
    if (plainValue(*value)) {
      argv.push_back(std::string("--") + name);
      argv.push_back(*value);
      options.push_back(std::string("OPTION ") + name + "=" + *value);
    }
  }

  std::optional<Clock::time_point> deadline;
  if (m_request.timeout.count() > 0) {
    deadline = Clock::now() + m_request.timeout + kDeadlineGrace;
  }
  Session session(m_wakeFd, m_canceled, deadline, childEnvironment(m_request));
  if (const gpg_error_t error = session.connect(*program, argv); error != 0) {
    if (session.interruption() != Interruption::None) {
      return interrupted(session.interruption());
    }
    return failed(session.whatHappened(*program, "before greeting", error));
  }

  // pinentry refuses options it does not know (older ones lack some); only a broken
  // conversation stops here.
  for (const auto& option : options) {
    (void)session.command(option);
    if (session.interruption() != Interruption::None) {
      return interrupted(session.interruption());
    }
  }

  std::vector<std::string> settings;
  if (m_request.timeout.count() > 0) {
    settings.push_back("SETTIMEOUT " + std::to_string(m_request.timeout.count()));
  }
  const std::pair<const char*, const std::string*> texts[] = {
      {"SETTITLE", &m_request.title},   {"SETDESC", &m_request.description},
      {"SETPROMPT", &m_request.prompt}, {"SETERROR", &m_request.errorText},
      {"SETOK", &m_request.okLabel},    {"SETCANCEL", &m_request.cancelLabel},
  };
  for (const auto& [command, text] : texts) {
    if (!text->empty()) {
      settings.push_back(assuanCommand(command, *text));
    }
  }
  if (m_request.repeat) {
    settings.emplace_back("SETREPEAT");
    if (!m_request.repeatError.empty()) {
      settings.push_back(assuanCommand("SETREPEATERROR", m_request.repeatError));
    }
  }
  for (const auto& setting : settings) {
    if (const gpg_error_t error = session.command(setting); error != 0) {
      if (session.interruption() != Interruption::None) {
        return interrupted(session.interruption());
      }
      const std::string name = setting.substr(0, setting.find(' '));
      return failed(session.whatHappened(*program, ("at " + name).c_str(), error));
    }
  }

  const gpg_error_t error = session.getPin();
  if (session.interruption() != Interruption::None) {
    return interrupted(session.interruption());
  }
  switch (gpg_err_code(error)) {
    case GPG_ERR_NO_ERROR: {
      PromptResult result = ended(PromptOutcome::Entered);
      result.pin = session.takePin();
      return result;
    }
    case GPG_ERR_CANCELED:
    case GPG_ERR_FULLY_CANCELED:
      return ended(PromptOutcome::Canceled);
    case GPG_ERR_TIMEOUT:
      return ended(PromptOutcome::TimedOut);
    default:
      return failed(session.whatHappened(*program, "at GETPIN", error));
  }
}

}  // namespace dojang::daemon::pinentry
