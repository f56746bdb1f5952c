#include "tests/support/pcscd_process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <unistd.h>
#include <winscard.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "tests/support/temp_dir.h"

namespace dojang::test {
namespace {

constexpr const char* kLockFile = "/tmp/dojang-pcscd.lock";
constexpr const char* kVpcdDriver = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so";

// vpcd binds every interface (INADDR_ANY, with SO_REUSEADDR), so test the port the same way.
bool portIsFree(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return false;
  }
  const int on = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_ANY);
  const bool free = ::bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0;
  ::close(fd);
  return free;
}

// One PC/SC context for a short look; released by the destructor.
class PcscContext final {
 public:
  PcscContext() {
    if (SCardEstablishContext(SCARD_SCOPE_SYSTEM, nullptr, nullptr, &m_context) != SCARD_S_SUCCESS) {
      m_context = 0;
    }
  }
  ~PcscContext() {
    if (m_context != 0) {
      SCardReleaseContext(m_context);
    }
  }
  PcscContext(const PcscContext&) = delete;
  PcscContext& operator=(const PcscContext&) = delete;

  [[nodiscard]] bool valid() const noexcept { return m_context != 0; }
  [[nodiscard]] SCARDCONTEXT get() const noexcept { return m_context; }

 private:
  SCARDCONTEXT m_context = 0;
};

bool readerListed(const std::string& readerName) {
  const PcscContext context;
  if (!context.valid()) {
    return false;
  }
  DWORD length = 0;
  if (SCardListReaders(context.get(), nullptr, nullptr, &length) != SCARD_S_SUCCESS) {
    return false;
  }
  std::string names(length, '\0');
  if (SCardListReaders(context.get(), nullptr, names.data(), &length) != SCARD_S_SUCCESS) {
    return false;
  }
  // A multi-string: names separated by NUL, the list ended by an empty one.
  for (std::size_t at = 0; at < names.size() && names[at] != '\0';) {
    const std::string name(names.c_str() + at);
    if (name == readerName) {
      return true;
    }
    at += name.size() + 1;
  }
  return false;
}

std::string tail(const std::filesystem::path& file) {
  try {
    const std::string text = readFile(file);
    return text.size() > 2000 ? text.substr(text.size() - 2000) : text;
  } catch (const std::exception&) {
    return {};
  }
}

}  // namespace

PcscdLock::PcscdLock() {
  m_fd = ::open(kLockFile, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
  if (m_fd < 0) {
    throw std::runtime_error(std::string("cannot open ") + kLockFile);
  }
  while (::flock(m_fd, LOCK_EX) != 0) {
    if (errno != EINTR) {
      ::close(m_fd);
      throw std::runtime_error(std::string("cannot lock ") + kLockFile);
    }
  }
}

PcscdLock::~PcscdLock() {
  ::flock(m_fd, LOCK_UN);
  ::close(m_fd);
}

std::uint16_t pickVpcdPort() {
  // Below the kernel's ephemeral range, so no outgoing connection takes it meanwhile.
  std::mt19937 random(std::random_device{}());
  std::uniform_int_distribution<int> ports(20000, 32000);
  for (int attempt = 0; attempt < 200; ++attempt) {
    const auto port = static_cast<std::uint16_t>(ports(random));
    if (portIsFree(port) && portIsFree(static_cast<std::uint16_t>(port + 1))) {
      return port;
    }
  }
  throw std::runtime_error("no free port pair for vpcd");
}

PcscdProcess::PcscdProcess(std::filesystem::path directory, std::string friendlyName, std::uint16_t port)
    : m_directory(std::move(directory)), m_friendlyName(std::move(friendlyName)),
      m_port(port != 0 ? port : pickVpcdPort()) {
  std::ostringstream config;
  // vpcd: DEVICENAME /dev/null:PORT makes it listen (on every interface; the card connects to
  // 127.0.0.1), CHANNELID the same port. Its second slot listens on PORT + 1.
  config << "FRIENDLYNAME \"" << m_friendlyName << "\"\n"
         << "DEVICENAME /dev/null:0x" << std::hex << m_port << "\n"
         << "LIBPATH " << kVpcdDriver << "\n"
         << "CHANNELID 0x" << m_port << "\n";
  writeFile(m_directory / "reader.conf", config.str());
  start();
}

PcscdProcess::~PcscdProcess() { stop(); }

void PcscdProcess::start() {
  if (m_process && m_process->running()) {
    return;
  }
  // Under the lock no other test's pcscd runs, so one that answers was left behind (by a test
  // that crashed): ours would exit at once, and the reader check below would pass on the old one.
  if (PcscContext().valid()) {
    throw std::runtime_error("a pcscd is already running (left over by a crashed test?); stop it first");
  }
  // -c replaces /etc/reader.conf.d with our file; -f keeps it in the foreground, logging to stdout.
  m_process = std::make_unique<BackgroundProcess>(
      std::vector<std::string>{"pcscd", "-f", "-c", (m_directory / "reader.conf").string()}, logFile());
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!readerListed(readerName())) {
    if (!m_process->running()) {
      throw std::runtime_error("pcscd exited (is another pcscd running?): " + tail(logFile()));
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      throw std::runtime_error("pcscd did not list " + readerName() + " within 10 s: " + tail(logFile()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

void PcscdProcess::stop() {
  if (m_process) {
    m_process->stop();
    m_process.reset();
  }
}

void PcscdProcess::restart() {
  stop();
  start();
}

bool PcscdProcess::running() { return m_process && m_process->running(); }

bool waitForCard(const std::string& readerName, bool present, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    const PcscContext context;
    if (context.valid()) {
      SCARD_READERSTATE state{};
      state.szReader = readerName.c_str();
      state.dwCurrentState = SCARD_STATE_UNAWARE;
      while (true) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
          return false;
        }
        const LONG rv = SCardGetStatusChange(context.get(), static_cast<DWORD>(left.count()), &state, 1);
        if (rv == SCARD_E_TIMEOUT) {
          return false;
        }
        if (rv != SCARD_S_SUCCESS) {
          break;  // reader not there yet, or pcscd restarted: a new context
        }
        const DWORD seen = state.dwEventState;
        // Present counts once pcscd has powered the card and read its ATR.
        const bool cardReady = (seen & SCARD_STATE_PRESENT) != 0 && (seen & SCARD_STATE_MUTE) == 0 &&
                               state.cbAtr > 0;
        const bool cardAbsent = (seen & SCARD_STATE_EMPTY) != 0;
        if (present ? cardReady : cardAbsent) {
          return true;
        }
        state.dwCurrentState = seen & ~static_cast<DWORD>(SCARD_STATE_CHANGED);
      }
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

VirtualPivCard::VirtualPivCard(std::filesystem::path directory) : m_directory(std::move(directory)) {}

VirtualPivCard::~VirtualPivCard() { stop(); }

std::filesystem::path VirtualPivCard::executable() {
  const char* path = std::getenv("DOJANG_VIRTUAL_PIV");
  if (path == nullptr || *path == '\0') {
    throw std::runtime_error("DOJANG_VIRTUAL_PIV is not set (meson test sets it)");
  }
  return path;
}

void VirtualPivCard::start(std::uint16_t port, const std::filesystem::path& stateFile,
                           const std::vector<std::string>& extraArgs) {
  stop();
  std::vector<std::string> argv = {executable().string(), "--port", std::to_string(port), "--apdu-log",
                                   apduLog().string()};
  if (!stateFile.empty()) {
    argv.insert(argv.end(), {"--state", stateFile.string()});
  }
  argv.insert(argv.end(), extraArgs.begin(), extraArgs.end());
  m_process = std::make_unique<BackgroundProcess>(std::move(argv), m_directory / "card.log");
}

int VirtualPivCard::stop() {
  if (!m_process) {
    return 0;
  }
  const int status = m_process->stop();
  m_process.reset();
  return status;
}

bool VirtualPivCard::running() { return m_process && m_process->running(); }

std::vector<std::string> VirtualPivCard::apduLines() const {
  std::vector<std::string> lines;
  std::ifstream in(apduLog());
  for (std::string line; std::getline(in, line);) {
    lines.push_back(line);
  }
  return lines;
}

std::size_t VirtualPivCard::apduCount() const { return apduLines().size(); }

void VirtualPivCard::clearApduLog() {
  // Truncated, not replaced: the card appends to the same file (O_APPEND).
  std::ofstream(apduLog(), std::ios::trunc);
}

}  // namespace dojang::test
