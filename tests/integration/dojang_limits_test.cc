// dojangd under pressure from same-uid processes: more connections than it allows, no file
// descriptors or address space left for another connection, length prefixes without payloads,
// a stolen client id, a program name that would forge log lines. The daemon must refuse what it
// cannot serve, say so once, and keep serving the clients it has.
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "src/common/cryptoki/cryptoki.h"
#include "src/common/errors/error.h"
#include "src/common/wire/codec.h"
#include "tests/support/dojangd_process.h"
#include "tests/support/raw_wire.h"
#include "tests/support/softhsm_token.h"

namespace {

using dojang::ckRvName;
using dojang::test::DojangdProcess;
using dojang::test::DojangModule;
using dojang::test::eventually;
using dojang::test::processAlive;
using dojang::test::randomClientId;
using dojang::test::RawConnection;
using dojang::test::requestFrame;
using dojang::test::slotWithLabel;
using dojang::test::SoftHsmToken;
namespace wire = dojang::wire;

constexpr const char* kTokenLabel = "dojang-limits";
constexpr const char* kPin = "1234";
constexpr std::array<CK_BYTE, 10> kP256Params = {0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07};

// A field of /proc/PID/status in kB (VmRSS, VmSize).
std::uint64_t statusKilobytes(pid_t pid, const std::string& field) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.starts_with(field + ":")) {
      return std::stoull(line.substr(field.size() + 1));
    }
  }
  throw std::runtime_error("no " + field + " for pid " + std::to_string(pid));
}

// utime + stime from /proc/PID/stat (fields 14 and 15), in seconds.
double cpuSeconds(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  std::istringstream fields(text.substr(text.rfind(')') + 2));
  std::string field;
  std::uint64_t ticks = 0;
  for (int index = 3; index <= 15 && fields >> field; ++index) {
    if (index >= 14) {
      ticks += std::stoull(field);
    }
  }
  return static_cast<double>(ticks) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

std::size_t openDescriptors(pid_t pid) {
  std::size_t count = 0;
  for ([[maybe_unused]] const auto& entry :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd")) {
    ++count;
  }
  return count;
}

// Lowers (or raises, up to the hard limit) a running process's soft limit.
void setSoftLimit(pid_t pid, decltype(RLIMIT_NOFILE) resource, rlim_t value) {
  rlimit limit{};
  REQUIRE(::prlimit(pid, resource, nullptr, &limit) == 0);
  limit.rlim_cur = value;
  REQUIRE(::prlimit(pid, resource, &limit, nullptr) == 0);
}

wire::Bytes helloFrame(const wire::Bytes& clientId = randomClientId(), const std::string& program = "dojang_limits_test") {
  return dojang::test::helloFrame(program, wire::kProtocolVersion, clientId);
}

// Opens up to `count` connections that each send a Hello and wait for nothing.
std::vector<std::unique_ptr<RawConnection>> idleConnections(const std::filesystem::path& socket, int count) {
  std::vector<std::unique_ptr<RawConnection>> connections;
  for (int i = 0; i < count; ++i) {
    auto connection = std::make_unique<RawConnection>(socket);
    if (!connection->connected() || !connection->send(helloFrame())) {
      break;  // the backlog is full: the daemon is not accepting; the test decides if that is fine
    }
    connections.push_back(std::move(connection));
  }
  return connections;
}

// Lines of the log that contain both texts.
std::size_t linesWith(const std::string& log, const std::string& first, const std::string& second) {
  std::istringstream lines(log);
  std::size_t count = 0;
  for (std::string line; std::getline(lines, line);) {
    count += line.find(first) != std::string::npos && line.find(second) != std::string::npos ? 1 : 0;
  }
  return count;
}

std::size_t occurrences(const std::string& text, const std::string& what) {
  std::size_t count = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + what.size())) {
    ++count;
  }
  return count;
}

// A client of the module in this process, logged in with a key to sign with: the client that
// must keep working whatever the other connections do.
class SigningClient final {
 public:
  explicit SigningClient(const DojangdProcess& daemon) {
    daemon.exportEnv();
    REQUIRE(m_module.initialize() == CKR_OK);
    auto& p11 = m_module.functions();
    const CK_SLOT_ID slot = slotWithLabel(p11, kTokenLabel);
    REQUIRE(p11.C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &m_session) == CKR_OK);
    std::string pin = kPin;
    REQUIRE(p11.C_Login(m_session, CKU_USER, reinterpret_cast<CK_UTF8CHAR_PTR>(pin.data()), pin.size()) == CKR_OK);
    CK_BBOOL yes = CK_TRUE;
    auto params = kP256Params;
    CK_MECHANISM mechanism{CKM_EC_KEY_PAIR_GEN, nullptr, 0};
    CK_ATTRIBUTE publicTemplate[] = {{CKA_EC_PARAMS, params.data(), params.size()}};
    CK_ATTRIBUTE privateTemplate[] = {{CKA_SIGN, &yes, sizeof yes}};
    CK_OBJECT_HANDLE publicKey = CK_INVALID_HANDLE;
    REQUIRE(p11.C_GenerateKeyPair(m_session, &mechanism, publicTemplate, 1, privateTemplate, 1, &publicKey,
                                  &m_key) == CKR_OK);
    REQUIRE(ckRvName(sign()) == ckRvName(CKR_OK));
  }

  CK_RV sign() {
    auto& p11 = m_module.functions();
    CK_MECHANISM ecdsa{CKM_ECDSA, nullptr, 0};
    std::array<CK_BYTE, 32> hash{};
    hash.fill(0x42);
    std::array<CK_BYTE, 128> signature{};
    CK_ULONG length = signature.size();
    if (const CK_RV rv = p11.C_SignInit(m_session, &ecdsa, m_key); rv != CKR_OK) {
      return rv;
    }
    return p11.C_Sign(m_session, hash.data(), hash.size(), signature.data(), &length);
  }

 private:
  DojangModule m_module;
  CK_SESSION_HANDLE m_session = CK_INVALID_HANDLE;
  CK_OBJECT_HANDLE m_key = CK_INVALID_HANDLE;
};

// Whoever asks must find the daemon serving: a fresh Hello is welcomed within the reply patience.
bool welcomesNewConnections(const DojangdProcess& daemon) {
  return eventually([&] {
    RawConnection fresh(daemon.socketPath());
    return fresh.connected() && fresh.call(helloFrame()) == std::optional<CK_RV>(CKR_OK);
  });
}

}  // namespace

TEST_CASE("over max_connections a Hello is refused with CKR_DEVICE_MEMORY, and clients keep working",
          "[integration][limits]") {
  SoftHsmToken token{{kTokenLabel, kPin, "12345678"}};
  DojangdProcess daemon(token, "max_connections = 20");
  SigningClient client(daemon);

  std::vector<std::unique_ptr<RawConnection>> connections;
  int welcomed = 0;
  int refused = 0;
  for (int i = 0; i < 40; ++i) {
    auto connection = std::make_unique<RawConnection>(daemon.socketPath());
    REQUIRE(connection->connected());
    const auto rv = connection->call(helloFrame());
    INFO("connection " << i << ": " << (rv ? ckRvName(*rv) : std::string("no reply")));
    REQUIRE(rv.has_value());
    if (*rv == CKR_OK) {
      ++welcomed;
    } else {
      CHECK(ckRvName(*rv) == ckRvName(CKR_DEVICE_MEMORY));
      CHECK(connection->closedByPeer());
      ++refused;
    }
    connections.push_back(std::move(connection));
  }
  INFO("dojangd log:\n" << daemon.log());
  CHECK(welcomed == 19);  // the signing client holds the twentieth connection
  CHECK(refused == 21);
  CHECK(ckRvName(client.sign()) == ckRvName(CKR_OK));
  // One line for the burst, not one per refusal.
  const auto lines = occurrences(daemon.log(), "max_connections");
  CHECK(lines >= 1);
  CHECK(lines <= 2);

  connections.clear();
  CHECK(welcomesNewConnections(daemon));
  CHECK(ckRvName(client.sign()) == ckRvName(CKR_OK));
  CHECK(daemon.stop() == 0);
}

TEST_CASE("one process cannot take every connection", "[integration][limits]") {
  SoftHsmToken token{{kTokenLabel, kPin, "12345678"}};
  DojangdProcess daemon(token, "max_connections = 20\nmax_connections_per_process = 5");
  std::vector<std::unique_ptr<RawConnection>> connections;
  int welcomed = 0;
  for (int i = 0; i < 8; ++i) {
    connections.push_back(std::make_unique<RawConnection>(daemon.socketPath()));
    const auto rv = connections.back()->call(helloFrame());
    REQUIRE(rv.has_value());
    welcomed += *rv == CKR_OK ? 1 : 0;
  }
  INFO("dojangd log:\n" << daemon.log());
  CHECK(welcomed == 5);
  CHECK(linesWith(daemon.log(), "refused", "max_connections_per_process") == 1);

  // Another process is still served.
  std::fflush(nullptr);
  const pid_t other = ::fork();
  REQUIRE(other >= 0);
  if (other == 0) {
    RawConnection mine(daemon.socketPath());
    ::_exit(mine.call(helloFrame()) == std::optional<CK_RV>(CKR_OK) ? 0 : 11);
  }
  int status = 0;
  REQUIRE(::waitpid(other, &status, 0) == other);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(daemon.stop() == 0);
}

TEST_CASE("a connection that sends no Hello is closed after hello_timeout_ms", "[integration][limits]") {
  SoftHsmToken token{{kTokenLabel, kPin, "12345678"}};
  DojangdProcess daemon(token, "max_connections = 4\nhello_timeout_ms = 300");
  std::vector<std::unique_ptr<RawConnection>> silent;
  for (int i = 0; i < 4; ++i) {
    silent.push_back(std::make_unique<RawConnection>(daemon.socketPath()));
    REQUIRE(silent.back()->connected());
  }
  for (auto& connection : silent) {
    CHECK(connection->closedByPeer());  // within the 10 s receive patience
  }
  // The slots they held are free again.
  CHECK(welcomesNewConnections(daemon));
  CHECK(daemon.stop() == 0);
}

TEST_CASE("out of file descriptors dojangd does not spin, and serves again once connections close",
          "[integration][limits]") {
  SoftHsmToken token{{kTokenLabel, kPin, "12345678"}};
  DojangdProcess daemon(token, "max_connections_per_process = 256");
  SigningClient client(daemon);
  const pid_t pid = daemon.pid();
  // Room for about 40 more connections, then EMFILE.
  setSoftLimit(pid, RLIMIT_NOFILE, openDescriptors(pid) + 40);

  auto connections = idleConnections(daemon.socketPath(), 120);
  INFO(connections.size() << " connections made");
  const double before = cpuSeconds(pid);
  std::this_thread::sleep_for(std::chrono::seconds(2));
  const double spent = cpuSeconds(pid) - before;
  INFO("dojangd log:\n" << daemon.log());
  CHECK(processAlive(pid));
  // Spinning on accept() would take the whole 2 s; backing off takes next to nothing.
  CHECK(spent < 0.5);

  connections.clear();
  CHECK(welcomesNewConnections(daemon));
  CHECK(ckRvName(client.sign()) == ckRvName(CKR_OK));
  CHECK(daemon.stop() == 0);
}

TEST_CASE("when no thread can be made for a connection dojangd refuses it and keeps serving",
          "[integration][limits]") {
  SoftHsmToken token{{kTokenLabel, kPin, "12345678"}};
  DojangdProcess daemon(token, "max_connections_per_process = 256");
  SigningClient client(daemon);
  const pid_t pid = daemon.pid();
  // A little more address space than it uses now: a few dozen connection threads fit, not 100.
  setSoftLimit(pid, RLIMIT_AS, (statusKilobytes(pid, "VmSize") + 24 * 1024) * 1024);

  std::vector<std::unique_ptr<RawConnection>> connections;
  int welcomed = 0;
  int refused = 0;
  for (int i = 0; i < 100; ++i) {
    auto connection = std::make_unique<RawConnection>(daemon.socketPath());
    REQUIRE(connection->connected());
    const auto rv = connection->call(helloFrame());
    if (rv == std::optional<CK_RV>(CKR_OK)) {
      ++welcomed;
    } else {
      ++refused;  // an error reply, or closed: never a hang (the call's patience is bounded)
    }
    connections.push_back(std::move(connection));
  }
  INFO(welcomed << " welcomed, " << refused << " refused; dojangd log:\n" << daemon.log());
  REQUIRE(processAlive(pid));
  CHECK(welcomed > 0);
  CHECK(refused > 0);

  connections.clear();
  setSoftLimit(pid, RLIMIT_AS, RLIM_INFINITY);
  CHECK(welcomesNewConnections(daemon));
  CHECK(ckRvName(client.sign()) == ckRvName(CKR_OK));
  CHECK(daemon.stop() == 0);
}

TEST_CASE("a length prefix without its payload costs the daemon what was sent, not what was announced",
          "[integration][limits]") {
  SoftHsmToken token{{kTokenLabel, kPin, "12345678"}};
  DojangdProcess daemon(token, "max_connections_per_process = 256");
  const pid_t pid = daemon.pid();
  wire::Bytes announcement;
  const auto announced = static_cast<std::uint32_t>(wire::kMaxFrameBytes - 1);
  for (std::size_t i = 0; i < 4; ++i) {
    announcement.push_back(static_cast<std::uint8_t>(announced >> (8 * i)));
  }
  announcement.insert(announcement.end(), {2, 0, 1, 2, 3, 4, 5, 6, 7, 8});

  SECTION("before Hello, only a small frame is allowed at all") {
    RawConnection raw(daemon.socketPath());
    REQUIRE(raw.send(announcement));
    CHECK(raw.closedByPeer());
  }
  SECTION("after Hello, 200 connections each announcing 4 MiB") {
    // Warm up: the first connections and calls allocate what the daemon keeps anyway.
    (void)idleConnections(daemon.socketPath(), 10);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    const auto before = statusKilobytes(pid, "VmRSS");
    std::vector<std::unique_ptr<RawConnection>> connections;
    for (int i = 0; i < 200; ++i) {
      auto connection = std::make_unique<RawConnection>(daemon.socketPath());
      REQUIRE(connection->connected());
      REQUIRE(connection->call(helloFrame()) == std::optional<CK_RV>(CKR_OK));
      REQUIRE(connection->send(announcement));
      connections.push_back(std::move(connection));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    const auto after = statusKilobytes(pid, "VmRSS");
    INFO("VmRSS " << before / 1024 << " MiB -> " << after / 1024 << " MiB");
    CHECK(after < before + 50 * 1024);
  }
  CHECK(processAlive(pid));
  CHECK(welcomesNewConnections(daemon));
  CHECK(daemon.stop() == 0);
}

TEST_CASE("a client id presented by another process is refused", "[integration][limits]") {
  SoftHsmToken token{{kTokenLabel, kPin, "12345678"}};
  DojangdProcess daemon(token);
  const auto socket = daemon.socketPath();
  const auto id = randomClientId();

  // Client A, by hand: its id, a session on the token.
  RawConnection first(socket);
  REQUIRE(first.call(helloFrame(id, "client-a")) == std::optional<CK_RV>(CKR_OK));
  wire::GetSlotListReply slots;
  REQUIRE(first.call(requestFrame<wire::CallId::GetSlotList>({true}), &slots) == std::optional<CK_RV>(CKR_OK));
  REQUIRE_FALSE(slots.slots.empty());
  wire::OpenSessionReply opened;
  REQUIRE(first.call(requestFrame<wire::CallId::OpenSession>({slots.slots[0], CKF_SERIAL_SESSION}), &opened) ==
          std::optional<CK_RV>(CKR_OK));
  const wire::SessionRequest sessionRequest{opened.session};

  // Another process that learned A's id.
  std::fflush(nullptr);
  const pid_t impostor = ::fork();
  REQUIRE(impostor >= 0);
  if (impostor == 0) {
    // Exit codes: 0 refused and shut out; 10+n the nth expectation failed.
    RawConnection stolen(socket);
    const auto rv = stolen.call(helloFrame(id, "client-a"));
    if (!rv || *rv == CKR_OK) {
      ::_exit(11);
    }
    wire::GetSessionInfoReply info;
    if (stolen.call(requestFrame<wire::CallId::GetSessionInfo>(sessionRequest), &info) == std::optional<CK_RV>(CKR_OK)) {
      ::_exit(12);
    }
    ::_exit(0);
  }
  int status = 0;
  REQUIRE(::waitpid(impostor, &status, 0) == impostor);
  INFO("dojangd log:\n" << daemon.log());
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(linesWith(daemon.log(), "refused", "pid " + std::to_string(impostor)) == 1);

  // A's own pooled connections still share its session.
  RawConnection second(socket);
  REQUIRE(second.call(helloFrame(id, "client-a")) == std::optional<CK_RV>(CKR_OK));
  wire::GetSessionInfoReply info;
  CHECK(second.call(requestFrame<wire::CallId::GetSessionInfo>(sessionRequest), &info) == std::optional<CK_RV>(CKR_OK));
  CHECK(first.call(requestFrame<wire::CallId::GetSessionInfo>(sessionRequest), &info) == std::optional<CK_RV>(CKR_OK));
  CHECK(daemon.stop() == 0);
}

TEST_CASE("DaemonStatus counts the clients other than the one asking", "[integration][limits]") {
  SoftHsmToken token{{kTokenLabel, kPin, "12345678"}};
  DojangdProcess daemon(token);
  RawConnection asking(daemon.socketPath());
  REQUIRE(asking.call(helloFrame()) == std::optional<CK_RV>(CKR_OK));
  const auto status = [&] {
    wire::DaemonStatusReply reply;
    REQUIRE(asking.call(requestFrame<wire::CallId::DaemonStatus>({}), &reply) == std::optional<CK_RV>(CKR_OK));
    return reply;
  };
  // The connections of dojangd's start-up check go away on their own.
  CHECK(eventually([&] { return status().connections == 0; }));
  CHECK(status().clients == 0);
  CHECK(status().sessions == 0);

  SigningClient client(daemon);
  const auto withClient = status();
  CHECK(withClient.clients == 1);
  CHECK(withClient.connections >= 1);
  CHECK(withClient.sessions == 1);
  CHECK(daemon.stop() == 0);
}

TEST_CASE("control characters a client sends are escaped in the log", "[integration][limits]") {
  SoftHsmToken token{{kTokenLabel, kPin, "12345678"}};
  DojangdProcess daemon(token);
  RawConnection raw(daemon.socketPath());
  REQUIRE(raw.call(helloFrame(randomClientId(), "evil\ndojangd: error: forged\r\x1b[2J")) ==
          std::optional<CK_RV>(CKR_OK));
  CHECK(daemon.stop() == 0);
  const auto log = daemon.log();
  INFO("dojangd log:\n" << log);
  CHECK(log.find("\ndojangd: error: forged") == std::string::npos);
  CHECK(log.find("evil\\ndojangd: error: forged\\r\\x1b[2J") != std::string::npos);
}
