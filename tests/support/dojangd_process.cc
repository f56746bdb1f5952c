#include "tests/support/dojangd_process.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string_view>
#include <thread>
#include <vector>

extern char** environ;

namespace dojang::test {

namespace {

std::string requiredEnv(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == 0) {
    throw std::runtime_error(std::string("$") + name + " is not set (run the test through meson test)");
  }
  return value;
}

int shellStatus(int status) {
  if (WIFEXITED(status)) {
    return WEXITSTATUS(status);
  }
  if (WIFSIGNALED(status)) {
    return 128 + WTERMSIG(status);
  }
  return -1;
}

void appendLittleEndian(std::vector<std::uint8_t>& out, std::uint64_t value, std::size_t bytes) {
  for (std::size_t i = 0; i < bytes; ++i) {
    out.push_back(static_cast<std::uint8_t>(value >> (8 * i)));
  }
}

// One Hello round trip by hand (frame: u32 length, u16 call 1, u32 version, bytes clientId,
// u32 pid, string program; reply: u32 length, u64 rv): true when dojangd answers CKR_OK, which
// means it has loaded its backends and is serving, not merely bound to the socket.
bool helloAnswered(const std::filesystem::path& socketPath) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return false;
  }
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  const std::string path = socketPath.string();
  std::memcpy(address.sun_path, path.c_str(), std::min(path.size() + 1, sizeof address.sun_path - 1));
  bool answered = false;
  timeval patience{2, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &patience, sizeof patience);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0) {
    const std::string program = "dojangd_process";
    std::vector<std::uint8_t> payload;
    appendLittleEndian(payload, 1, 2);   // Hello
    appendLittleEndian(payload, 1, 4);   // protocol version
    appendLittleEndian(payload, 16, 4);  // clientId
    for (int i = 0; i < 16; ++i) {
      payload.push_back(static_cast<std::uint8_t>(0xD0 + i));
    }
    appendLittleEndian(payload, static_cast<std::uint32_t>(::getpid()), 4);
    appendLittleEndian(payload, program.size(), 4);
    payload.insert(payload.end(), program.begin(), program.end());
    std::vector<std::uint8_t> frame;
    appendLittleEndian(frame, payload.size(), 4);
    frame.insert(frame.end(), payload.begin(), payload.end());
    if (::send(fd, frame.data(), frame.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(frame.size())) {
      std::array<std::uint8_t, 12> reply{};
      std::size_t got = 0;
      while (got < reply.size()) {
        const ssize_t n = ::recv(fd, reply.data() + got, reply.size() - got, 0);
        if (n <= 0) {
          break;
        }
        got += static_cast<std::size_t>(n);
      }
      if (got == reply.size()) {
        std::uint64_t rv = 0;
        for (std::size_t i = 0; i < 8; ++i) {
          rv |= static_cast<std::uint64_t>(reply[4 + i]) << (8 * i);
        }
        answered = rv == 0;
      }
    }
  }
  ::close(fd);
  return answered;
}

}  // namespace

std::string dojangdExecutable() {
  return requiredEnv("DOJANGD");
}

std::string dojangModulePath() {
  return requiredEnv("DOJANG_MODULE");
}

std::string dojangdConfigFor(const SoftHsmToken& token, const std::string& daemonSettings,
                             const std::string& pinSettings) {
  const std::string daemonTable = daemonSettings.empty() ? "" : "[daemon]\n" + daemonSettings + "\n";
  const std::string pinTable = pinSettings.empty() ? "" : "[pin]\n" + pinSettings + "\n";
  return daemonTable + pinTable +
         "[[backend]]\n"
         "name = \"softhsm\"\n"
         "module = \"" +
         token.modulePath() + "\"\n";
}

DojangdProcess::DojangdProcess(const SoftHsmToken& token, const std::string& daemonSettings)
    : DojangdProcess(token, DojangdOptions{daemonSettings, {}, {}, kApplicationPinMode}) {}

DojangdProcess::DojangdProcess(const SoftHsmToken& token, const DojangdOptions& options)
    : m_dir("dojangd-test-"), m_softhsmConf(token.configPath()) {
  m_env = {{"XDG_STATE_HOME", (m_dir / "state").string()},
           {"DBUS_SESSION_BUS_ADDRESS", "unix:path=" + (m_dir / "no-session-bus").string()}};
  for (const auto& [name, value] : options.env) {
    m_env[name] = value;
  }
  writeFile(configPath(),
            dojangdConfigFor(token, options.daemonSettings, options.pinSettings) + options.extraConfig);
  start();
}

DojangdProcess::~DojangdProcess() {
  if (m_pid > 0) {
    kill9();
  }
}

void DojangdProcess::start() {
  if (m_pid > 0) {
    throw std::runtime_error("dojangd is already running as pid " + std::to_string(m_pid));
  }
  const std::string program = dojangdExecutable();
  std::vector<std::string> args = {program,    "--foreground",       "-v", "--socket", socketPath().string(),
                                   "--config", configPath().string()};
  std::vector<char*> argv;
  for (auto& arg : args) {
    argv.push_back(arg.data());
  }
  argv.push_back(nullptr);

  // Our environment, with SOFTHSM2_CONF for the token and nothing that points elsewhere.
  std::vector<std::string> envStrings;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    const std::string_view text(*entry);
    const auto name = text.substr(0, text.find('='));
    if (name == "SOFTHSM2_CONF" || name == "DOJANG_SOCKET" || m_env.contains(std::string(name))) {
      continue;
    }
    envStrings.emplace_back(text);
  }
  for (const auto& [name, value] : m_env) {
    envStrings.push_back(name + "=" + value);
  }
  envStrings.push_back("SOFTHSM2_CONF=" + m_softhsmConf.string());
  envStrings.push_back("DOJANG_SOCKET=" + socketPath().string());
  std::vector<char*> envp;
  for (auto& entry : envStrings) {
    envp.push_back(entry.data());
  }
  envp.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, logPath().c_str(), O_WRONLY | O_CREAT | O_APPEND,
                                   0600);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  // The child must not inherit a blocked signal mask (Catch2 or a test thread may block some).
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attributes, &none);
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  sigaddset(&defaults, SIGTERM);
  posix_spawnattr_setsigdefault(&attributes, &defaults);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t pid = -1;
  const int error = ::posix_spawn(&pid, program.c_str(), &actions, &attributes, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attributes);
  if (error != 0) {
    throw std::runtime_error("cannot start " + program + ": " + std::strerror(error));
  }
  m_pid = pid;

  const auto deadline = std::chrono::steady_clock::now() + kStartPatience;
  while (!helloAnswered(socketPath())) {
    if (const auto status = reap(std::chrono::milliseconds(0))) {
      throw std::runtime_error("dojangd exited with status " + std::to_string(*status) +
                               " before serving; its log:\n" + log());
    }
    if (std::chrono::steady_clock::now() > deadline) {
      kill9();
      throw std::runtime_error("dojangd did not serve " + socketPath().string() + " within " +
                               std::to_string(kStartPatience.count()) + " s; its log:\n" + log());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::optional<int> DojangdProcess::reap(std::chrono::milliseconds patience) {
  if (m_pid <= 0) {
    throw std::runtime_error("dojangd is not running");
  }
  const auto deadline = std::chrono::steady_clock::now() + patience;
  for (;;) {
    int status = 0;
    const pid_t done = ::waitpid(m_pid, &status, WNOHANG);
    if (done == m_pid) {
      m_pid = -1;
      return shellStatus(status);
    }
    if (done < 0 && errno != EINTR) {
      const std::string reason = std::strerror(errno);
      m_pid = -1;
      throw std::runtime_error("waitpid for dojangd failed: " + reason);
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      return std::nullopt;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

int DojangdProcess::stop() {
  if (m_pid <= 0) {
    throw std::runtime_error("dojangd is not running");
  }
  ::kill(m_pid, SIGTERM);
  if (const auto status = reap(kStopPatience)) {
    return *status;
  }
  ::kill(m_pid, SIGKILL);
  const auto status = reap(kStopPatience);
  return status.value_or(-1);
}

void DojangdProcess::kill9() {
  if (m_pid <= 0) {
    return;
  }
  ::kill(m_pid, SIGKILL);
  (void)reap(kStopPatience);
}

void DojangdProcess::restart() {
  if (m_pid > 0) {
    throw std::runtime_error("restart: dojangd is still running; stop() or kill9() it first");
  }
  start();
}

std::string DojangdProcess::log() const {
  try {
    return readFile(logPath());
  } catch (const std::exception&) {
    return {};
  }
}

std::map<std::string, std::string> DojangdProcess::env() const {
  return {{"DOJANG_SOCKET", socketPath().string()},
          {"DOJANG_NO_AUTOSTART", "1"},
          {"SOFTHSM2_CONF", m_softhsmConf.string()}};
}

void DojangdProcess::exportEnv() const {
  for (const auto& [name, value] : env()) {
    ::setenv(name.c_str(), value.c_str(), 1);
  }
}

DojangModule::DojangModule(const std::string& path) {
  m_handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (m_handle == nullptr) {
    const char* reason = ::dlerror();
    throw std::runtime_error("dlopen " + path + ": " + (reason != nullptr ? reason : "unknown error"));
  }
  void* symbol = ::dlsym(m_handle, "C_GetFunctionList");
  CK_C_GetFunctionList getFunctionList = nullptr;
  static_assert(sizeof getFunctionList == sizeof symbol);
  std::memcpy(&getFunctionList, &symbol, sizeof symbol);
  if (getFunctionList == nullptr || getFunctionList(&m_functions) != CKR_OK || m_functions == nullptr) {
    ::dlclose(m_handle);
    throw std::runtime_error(path + " has no usable C_GetFunctionList");
  }
}

DojangModule::~DojangModule() {
  if (m_initializedBy == ::getpid()) {
    (void)finalize();
  }
  ::dlclose(m_handle);
}

CK_RV DojangModule::initialize() {
  CK_C_INITIALIZE_ARGS args{};
  args.flags = CKF_OS_LOCKING_OK;
  const CK_RV rv = m_functions->C_Initialize(&args);
  if (rv == CKR_OK) {
    m_initializedBy = ::getpid();
  }
  return rv;
}

CK_RV DojangModule::finalize() {
  const CK_RV rv = m_functions->C_Finalize(nullptr);
  if (rv == CKR_OK) {
    m_initializedBy = -1;
  }
  return rv;
}

CK_SLOT_ID slotWithLabel(CK_FUNCTION_LIST& p11, const std::string& label) {
  CK_ULONG count = 0;
  if (p11.C_GetSlotList(CK_TRUE, nullptr, &count) != CKR_OK) {
    throw std::runtime_error("C_GetSlotList failed");
  }
  std::vector<CK_SLOT_ID> slots(count);
  if (p11.C_GetSlotList(CK_TRUE, slots.data(), &count) != CKR_OK) {
    throw std::runtime_error("C_GetSlotList failed");
  }
  for (CK_ULONG i = 0; i < count; ++i) {
    CK_TOKEN_INFO info{};
    if (p11.C_GetTokenInfo(slots[i], &info) != CKR_OK) {
      continue;
    }
    std::string found(reinterpret_cast<const char*>(info.label), sizeof info.label);
    found.erase(found.find_last_not_of(' ') + 1);
    if (found == label) {
      return slots[i];
    }
  }
  throw std::runtime_error("no token labelled " + label);
}

}  // namespace dojang::test
