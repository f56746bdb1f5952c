// dojangd under socket activation, as systemd's dojangd.socket starts it: systemd-socket-activate
// (systemd's own tool for the LISTEN_FDS protocol) binds the socket and starts dojangd on the first
// connection; pkcs11-tool through dojang-pkcs11.so sees the SoftHSM token; dojangd tells
// NOTIFY_SOCKET READY=1 and leaves systemd's socket file alone when it stops. A dojangd passed
// anything but one listening Unix stream socket exits with a message that says what it got.
#include <catch2/catch.hpp>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/dojangd_process.h"
#include "tests/support/run_command.h"
#include "tests/support/softhsm_token.h"
#include "tests/support/temp_dir.h"

namespace {

using dojang::test::dojangdConfigFor;
using dojang::test::dojangdExecutable;
using dojang::test::dojangModulePath;
using dojang::test::readFile;
using dojang::test::runCommand;
using dojang::test::SoftHsmToken;
using dojang::test::TempDir;
using dojang::test::writeFile;

constexpr std::chrono::seconds kPatience{10};

sockaddr_un unixAddress(const std::filesystem::path& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  const std::string text = path.string();
  REQUIRE(text.size() < sizeof address.sun_path);
  std::memcpy(address.sun_path, text.c_str(), text.size() + 1);
  return address;
}

// A child process with stdout and stderr in a file: started with execve, an optional descriptor
// placed at fd 3 and LISTEN_PID set to the child's own pid (as systemd does), killed if still
// running when the owner dies.
class Child final {
 public:
  struct Launch {
    std::vector<std::string> argv;
    std::vector<std::string> env;
    std::filesystem::path output;
    std::optional<int> fd3;
    std::optional<int> listenFds;  // LISTEN_FDS, with LISTEN_PID = the child
  };

  explicit Child(Launch launch) : m_output(launch.output) {
    m_pid = ::fork();
    if (m_pid < 0) {
      throw std::runtime_error("fork failed");
    }
    if (m_pid == 0) {
      execChild(launch);
    }
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child() {
    if (m_pid > 0) {
      ::kill(m_pid, SIGKILL);
      ::waitpid(m_pid, nullptr, 0);
    }
  }

  [[nodiscard]] pid_t pid() const noexcept { return m_pid; }
  [[nodiscard]] std::string output() const { return readFile(m_output); }

  // The exit status (128 + signal when killed), or nullopt if still running after `patience`.
  std::optional<int> waitForExit(std::chrono::milliseconds patience) {
    const auto deadline = std::chrono::steady_clock::now() + patience;
    for (;;) {
      int status = 0;
      if (::waitpid(m_pid, &status, WNOHANG) == m_pid) {
        m_pid = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      if (std::chrono::steady_clock::now() > deadline) {
        return std::nullopt;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

 private:
  [[noreturn]] static void execChild(Launch& launch) {
    const int out = ::open(launch.output.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    const int devNull = ::open("/dev/null", O_RDONLY);
    ::dup2(devNull, STDIN_FILENO);
    ::dup2(out, STDOUT_FILENO);
    ::dup2(out, STDERR_FILENO);
    if (launch.fd3 == 3) {
      ::fcntl(3, F_SETFD, 0);  // already in place: only its FD_CLOEXEC must go
    } else if (launch.fd3) {
      ::dup2(*launch.fd3, 3);  // dup2 clears FD_CLOEXEC on the copy
    }
    if (launch.listenFds) {
      launch.env.push_back("LISTEN_FDS=" + std::to_string(*launch.listenFds));
      launch.env.push_back("LISTEN_PID=" + std::to_string(::getpid()));
    }
    std::vector<char*> argv;
    for (auto& argument : launch.argv) {
      argv.push_back(argument.data());
    }
    argv.push_back(nullptr);
    std::vector<char*> envp;
    for (auto& entry : launch.env) {
      envp.push_back(entry.data());
    }
    envp.push_back(nullptr);
    ::execvpe(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }

  pid_t m_pid = -1;
  std::filesystem::path m_output;
};

bool waitUntil(const std::function<bool()>& condition) {
  const auto deadline = std::chrono::steady_clock::now() + kPatience;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) {
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

// A datagram socket standing in for systemd's NOTIFY_SOCKET; closed when the owner dies.
class NotifySocket final {
 public:
  explicit NotifySocket(const std::filesystem::path& path) : m_path(path) {
    m_fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    const sockaddr_un address = unixAddress(path);
    REQUIRE(::bind(m_fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0);
    timeval patience{static_cast<time_t>(kPatience.count()), 0};
    ::setsockopt(m_fd, SOL_SOCKET, SO_RCVTIMEO, &patience, sizeof patience);
  }
  NotifySocket(const NotifySocket&) = delete;
  NotifySocket& operator=(const NotifySocket&) = delete;
  ~NotifySocket() { ::close(m_fd); }

  // The next message, or empty after kPatience.
  std::string next() {
    char buffer[512];
    const ssize_t got = ::recv(m_fd, buffer, sizeof buffer, 0);
    return got > 0 ? std::string(buffer, static_cast<std::size_t>(got)) : std::string();
  }
  [[nodiscard]] const std::filesystem::path& path() const noexcept { return m_path; }

 private:
  std::filesystem::path m_path;
  int m_fd = -1;
};

// What every dojangd of these tests gets: the token, and nothing that reaches the user's files.
std::vector<std::string> daemonEnv(const SoftHsmToken& token, const TempDir& dir) {
  return {"SOFTHSM2_CONF=" + token.configPath().string(), "XDG_STATE_HOME=" + (dir / "state").string(),
          "DBUS_SESSION_BUS_ADDRESS=unix:path=" + (dir / "no-session-bus").string(), "PATH=/usr/bin:/bin"};
}

// dojangd given `fd` as fd 3 (LISTEN_FDS=listenFds): its exit status and output.
std::pair<std::optional<int>, std::string> dojangdWithInheritedFd(const SoftHsmToken& token, int fd,
                                                                  int listenFds = 1) {
  TempDir dir("dojang-activation-");
  writeFile(dir / "dojangd.toml", dojangdConfigFor(token));
  auto env = daemonEnv(token, dir);
  env.push_back("DOJANG_SOCKET=" + (dir / "own.sock").string());
  Child dojangd({{dojangdExecutable(), "--foreground", "--config", (dir / "dojangd.toml").string()},
                 env,
                 dir / "dojangd.log",
                 fd,
                 listenFds});
  const auto status = dojangd.waitForExit(kPatience);
  // It did not fall back to binding a socket of its own.
  CHECK_FALSE(std::filesystem::exists(dir / "own.sock"));
  return {status, dojangd.output()};
}

}  // namespace

TEST_CASE("socket activation: pkcs11-tool reaches the token through the socket systemd passed") {
  SoftHsmToken token;
  TempDir dir("dojang-activation-");
  writeFile(dir / "dojangd.toml", dojangdConfigFor(token));
  const auto socketPath = dir / "dojang" / "pkcs11.sock";
  NotifySocket notify(dir / "notify");
  auto env = daemonEnv(token, dir);
  std::vector<std::string> argv = {"systemd-socket-activate", "-l", socketPath.string()};
  for (const auto& entry : env) {
    argv.insert(argv.end(), {"-E", entry});
  }
  argv.insert(argv.end(), {"-E", "NOTIFY_SOCKET=" + notify.path().string(), dojangdExecutable(), "--foreground",
                           "-v", "--config", (dir / "dojangd.toml").string()});
  std::filesystem::create_directories(socketPath.parent_path());
  Child activator({argv, {"PATH=/usr/bin:/bin"}, dir / "dojangd.log", std::nullopt, std::nullopt});
  REQUIRE(waitUntil([&] { return std::filesystem::exists(socketPath); }));
  // Bound by systemd-socket-activate; dojangd starts only on the first connection.
  CHECK(activator.output().find("serving the socket systemd passed") == std::string::npos);

  // A dojangd started by hand on the same path finds a listener there and leaves it alone.
  auto byHandEnv = daemonEnv(token, dir);
  byHandEnv.push_back("DOJANG_SOCKET=" + socketPath.string());
  Child byHand({{dojangdExecutable(), "--foreground", "--config", (dir / "dojangd.toml").string()},
                byHandEnv,
                dir / "by-hand.log",
                std::nullopt,
                std::nullopt});
  CHECK(byHand.waitForExit(kPatience) == std::optional<int>(0));
  CHECK(byHand.output().find(socketPath.string() + " is served by another listener") != std::string::npos);

  const auto listed = runCommand({"pkcs11-tool", "--module", dojangModulePath(), "-L"},
                                 {{"DOJANG_SOCKET", socketPath.string()}, {"DOJANG_NO_AUTOSTART", "1"},
                                  {"SOFTHSM2_CONF", token.configPath().string()}});
  INFO(listed.out << listed.err << activator.output());
  REQUIRE(listed.exitCode == 0);
  CHECK(listed.out.find("token label        : " + token.label()) != std::string::npos);
  CHECK(activator.output().find("serving the socket systemd passed: " + socketPath.string()) != std::string::npos);
  CHECK(notify.next() == "READY=1");

  // The same process (systemd-socket-activate exec'd dojangd) stops cleanly on SIGTERM, says
  // so to systemd, and leaves the socket file to its owner.
  REQUIRE(::kill(activator.pid(), SIGTERM) == 0);
  CHECK(activator.waitForExit(kPatience) == std::optional<int>(0));
  CHECK(notify.next() == "STOPPING=1");
  CHECK(std::filesystem::exists(socketPath));
}

TEST_CASE("socket activation: dojangd refuses a descriptor that is not a listening Unix stream socket") {
  SoftHsmToken token;

  SECTION("not a socket") {
    const int devNull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    const auto [status, output] = dojangdWithInheritedFd(token, devNull);
    ::close(devNull);
    INFO(output);
    CHECK(status == std::optional<int>(1));
    CHECK(output.find("the socket systemd passed (fd 3) cannot be served: it is not a socket") != std::string::npos);
  }
  SECTION("a connected Unix socket, not a listening one (as Accept=yes passes)") {
    int pair[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0);
    const auto [status, output] = dojangdWithInheritedFd(token, pair[0]);
    ::close(pair[0]);
    ::close(pair[1]);
    INFO(output);
    CHECK(status == std::optional<int>(1));
    CHECK(output.find("cannot be served: it is not listening") != std::string::npos);
  }
  SECTION("a Unix datagram socket (ListenDatagram=)") {
    const int datagram = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    const auto [status, output] = dojangdWithInheritedFd(token, datagram);
    ::close(datagram);
    INFO(output);
    CHECK(status == std::optional<int>(1));
    CHECK(output.find("cannot be served: it is not a stream socket") != std::string::npos);
  }
  SECTION("a listening TCP socket (ListenStream=PORT)") {
    const int tcp = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in loopback{};
    loopback.sin_family = AF_INET;
    loopback.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(tcp, reinterpret_cast<const sockaddr*>(&loopback), sizeof loopback) == 0);
    REQUIRE(::listen(tcp, 4) == 0);
    const auto [status, output] = dojangdWithInheritedFd(token, tcp);
    ::close(tcp);
    INFO(output);
    CHECK(status == std::optional<int>(1));
    CHECK(output.find("cannot be served: it is not a Unix socket") != std::string::npos);
  }
  SECTION("two sockets") {
    const int devNull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    const auto [status, output] = dojangdWithInheritedFd(token, devNull, 2);
    ::close(devNull);
    INFO(output);
    CHECK(status == std::optional<int>(1));
    CHECK(output.find("systemd passed 2 sockets; dojangd serves exactly one") != std::string::npos);
  }
}
