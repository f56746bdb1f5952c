#include "pkcs11/connection_pool.h"

#include <dlfcn.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <thread>

#include "pkcs11/frontend_testing.h"

extern char** environ;

namespace dojang::frontend {

namespace {

constexpr std::size_t kMaxIdleConnections = 8;
constexpr auto kAutostartPatience = std::chrono::seconds(5);
constexpr std::chrono::milliseconds kDefaultReplyTimeout{30000};
constexpr std::chrono::milliseconds kShortestReplyTimeout{1000};
static_assert(kShortestReplyTimeout >= 2 * wire::kKeepaliveInterval);

// A host program may initialise the module many times; it hears about a mismatch once.
std::atomic<bool> g_mismatchReported{false};

// What the daemon said to one Hello.
struct HelloAnswer {
  bool accepted = false;
  std::optional<wire::HelloReply> reply;  // also carried by a refusal from protocol 2 on
};

std::string range() {
  return std::to_string(wire::kMinProtocolVersion) + ".." + std::to_string(wire::kProtocolVersion);
}

// One line on stderr, the only place a library inside a browser can say why it cannot work.
void reportMismatch(const HelloAnswer& answer) {
  if (g_mismatchReported.exchange(true)) {
    return;
  }
  std::string line = "dojang-pkcs11: ";
  if (answer.reply) {
    const auto daemonVersion = answer.reply->protocolVersion;
    line += "dojangd (pid " + std::to_string(answer.reply->daemonPid) + ") speaks protocol " +
            std::to_string(daemonVersion) + ", this module speaks " + range() + "; restart " +
            (daemonVersion < wire::kMinProtocolVersion ? "dojangd (it is older)"
                                                       : "this program (its dojang-pkcs11.so is older)");
  } else {
    line += "dojangd refused protocols " + range() + " of this module; restart the older of dojangd and this program";
  }
  std::fprintf(stderr, "%s\n", line.c_str());
}

bool fileIsExecutable(const std::string& path) { return ::access(path.c_str(), X_OK) == 0; }

// dojangd sits in $DOJANGD, or beside the module in a build tree, or where it was installed.
std::string daemonExecutable() {
  if (const char* env = std::getenv("DOJANGD"); env != nullptr && *env != 0) {
    return env;
  }
  Dl_info info{};
  if (::dladdr(reinterpret_cast<void*>(&daemonExecutable), &info) != 0 && info.dli_fname != nullptr) {
    std::string self(info.dli_fname);
    const auto slash = self.rfind('/');
    if (slash != std::string::npos) {
      const std::string sibling = self.substr(0, slash) + "/../src/daemon/dojangd";
      if (fileIsExecutable(sibling)) {
        return sibling;
      }
    }
  }
  return DOJANGD_INSTALLED_PATH;
}

bool startDaemon(const std::string& socketPath) {
  const std::string program = daemonExecutable();
  std::string socketArgument = socketPath;
  char arg0[] = "dojangd";
  char arg1[] = "--daemonize";
  char arg2[] = "--socket";
  char* argv[] = {arg0, arg1, arg2, socketArgument.data(), nullptr};
  pid_t pid = 0;
  if (::posix_spawn(&pid, program.c_str(), nullptr, nullptr, argv, environ) != 0) {
    return false;
  }
  int status = 0;
  // dojangd --daemonize exits once its socket is ready (or it failed).
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

}  // namespace

std::chrono::milliseconds replyTimeoutFromEnvironment() {
  const char* env = std::getenv("DOJANG_TIMEOUT_MS");
  if (env == nullptr || *env == 0) {
    return kDefaultReplyTimeout;
  }
  char* end = nullptr;
  const long long value = std::strtoll(env, &end, 10);
  if (*end != 0 || value < 0) {
    return kDefaultReplyTimeout;
  }
  return value == 0 ? std::chrono::milliseconds(0)
                    : std::max(std::chrono::milliseconds(value), kShortestReplyTimeout);
}

void resetMismatchReportForTesting() { g_mismatchReported = false; }

Connector socketConnector(std::string socketPath, std::chrono::milliseconds timeout) {
  return [socketPath, timeout]() -> std::unique_ptr<wire::Transport> {
    try {
      return wire::connectUnixSocket(socketPath, timeout);
    } catch (const wire::TransportTimedOut& stuck) {
      throw DaemonUnreachable(stuck.what());  // someone listens but does not accept: no autostart
    } catch (const wire::TransportClosed& first) {
      if (std::getenv("DOJANG_NO_AUTOSTART") != nullptr) {
        throw DaemonUnreachable(first.what());
      }
      if (!startDaemon(socketPath)) {
        throw DaemonUnreachable(std::string(first.what()) + "; starting dojangd failed");
      }
      const auto deadline = std::chrono::steady_clock::now() + kAutostartPatience;
      for (;;) {
        try {
          return wire::connectUnixSocket(socketPath, timeout);
        } catch (const wire::TransportTimedOut& stuck) {
          throw DaemonUnreachable(stuck.what());
        } catch (const wire::TransportClosed& again) {
          if (std::chrono::steady_clock::now() > deadline) {
            throw DaemonUnreachable(again.what());
          }
          std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
      }
    }
  };
}

ConnectionPool::ConnectionPool(Connector connector, wire::HelloRequest hello, std::chrono::milliseconds timeout)
    : m_connector(std::move(connector)), m_hello(std::move(hello)), m_timeout(timeout) {}

ConnectionPool::~ConnectionPool() { shutdownAll(); }

void ConnectionPool::armTimeout(Connection& connection, bool callMayWait) {
  const bool keptAlive = connection.protocol >= wire::kKeepaliveSinceProtocol;
  const auto wanted = callMayWait && !keptAlive ? std::chrono::milliseconds(0) : m_timeout;
  if (wanted != connection.timeout) {
    connection.transport->setTimeout(wanted);
    connection.timeout = wanted;
  }
}

namespace {
HelloAnswer sayHello(wire::Transport& transport, const wire::HelloRequest& hello, wire::Bytes& frame,
                     wire::Bytes& payload) {
  wire::encodeRequest<wire::CallId::Hello>(hello, frame);
  HelloAnswer answer;
  try {
    transport.send(frame);
    transport.receive(payload);
    wire::Decoder decoder(payload);
    std::uint64_t rv = 0;
    decoder.read(rv);
    answer.accepted = rv == CKR_OK;
    if (!answer.accepted && decoder.remaining() == 0) {
      return answer;  // a protocol 1 daemon's refusal says nothing more
    }
    wire::HelloReply reply;
    decoder.read(reply);
    answer.reply = reply;
  } catch (const wire::TransportTimedOut& error) {
    throw DaemonUnreachable(std::string("dojangd did not answer Hello: ") + error.what());
  } catch (const wire::TransportClosed& error) {
    throw DaemonUnreachable(std::string("dojangd closed the connection: ") + error.what());
  } catch (const wire::MalformedFrame& error) {
    throw DaemonUnreachable(std::string("dojangd answered nonsense: ") + error.what());
  }
  return answer;
}
}  // namespace

std::unique_ptr<ConnectionPool::Connection> ConnectionPool::connect() {
  // The newest protocol first; a daemon that refuses it or answers outside our range gets one
  // more try with the oldest we speak (a protocol 1 daemon refuses anything but 1).
  wire::HelloRequest hello = m_hello;
  hello.protocolVersion = wire::kProtocolVersion;
  for (;;) {
    auto connection = std::make_unique<Connection>();
    connection->transport = m_connector();
    try {
      connection->transport->setTimeout(m_timeout);
    } catch (const wire::TransportClosed& error) {
      throw DaemonUnreachable(error.what());
    }
    connection->timeout = m_timeout;
    const HelloAnswer answer = sayHello(*connection->transport, hello, connection->frame, connection->payload);
    if (answer.accepted && answer.reply && wire::speaksProtocol(answer.reply->protocolVersion) &&
        answer.reply->protocolVersion <= hello.protocolVersion) {
      connection->protocol = answer.reply->protocolVersion;
      return welcome(std::move(connection), *answer.reply);
    }
    if (hello.protocolVersion != wire::kMinProtocolVersion) {
      hello.protocolVersion = wire::kMinProtocolVersion;
      continue;
    }
    reportMismatch(answer);
    throw DaemonUnreachable("dojangd and this module speak no common protocol version");
  }
}

std::unique_ptr<ConnectionPool::Connection> ConnectionPool::welcome(std::unique_ptr<Connection> connection,
                                                                   const wire::HelloReply& reply) {
  bool restarted = false;
  {
    std::lock_guard lock(m_mutex);
    if (!m_daemonInstance.empty() && m_daemonInstance != reply.daemonInstance) {
      restarted = true;
      m_idle.clear();  // those went to the old daemon
    }
    m_daemonInstance = reply.daemonInstance;
    m_protocol = connection->protocol;
  }
  if (restarted && m_onRestart) {
    m_onRestart();
  }
  return connection;
}

std::unique_ptr<ConnectionPool::Connection> ConnectionPool::acquire() {
  {
    std::lock_guard lock(m_mutex);
    if (m_shutdown) {
      throw DaemonUnreachable("finalized");
    }
    if (!m_idle.empty()) {
      auto connection = std::move(m_idle.back());
      m_idle.pop_back();
      m_busy.push_back(connection->transport.get());
      return connection;
    }
  }
  auto connection = connect();
  std::lock_guard lock(m_mutex);
  if (m_shutdown) {
    throw DaemonUnreachable("finalized");
  }
  m_busy.push_back(connection->transport.get());
  return connection;
}

void ConnectionPool::release(std::unique_ptr<Connection> connection) {
  std::lock_guard lock(m_mutex);
  std::erase(m_busy, connection->transport.get());
  if (!m_shutdown && m_idle.size() < kMaxIdleConnections) {
    m_idle.push_back(std::move(connection));
  }
}

void ConnectionPool::discard(std::unique_ptr<Connection> connection) noexcept {
  std::lock_guard lock(m_mutex);
  std::erase(m_busy, connection->transport.get());
  connection.reset();
}

void ConnectionPool::shutdownAll() noexcept {
  std::lock_guard lock(m_mutex);
  m_shutdown = true;
  for (auto* transport : m_busy) {
    transport->shutdown();  // wakes a thread blocked in C_WaitForSlotEvent
  }
  m_idle.clear();
}

}  // namespace dojang::frontend
