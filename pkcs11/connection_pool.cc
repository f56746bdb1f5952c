#include "connection_pool.h"

#include <dlfcn.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <thread>

extern char** environ;

namespace dojang::frontend {

namespace {

constexpr std::size_t kMaxIdleConnections = 8;
constexpr auto kAutostartPatience = std::chrono::seconds(5);

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

Connector socketConnector(std::string socketPath) {
  return [socketPath]() -> std::unique_ptr<wire::Transport> {
    try {
      return wire::connectUnixSocket(socketPath);
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
          return wire::connectUnixSocket(socketPath);
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

ConnectionPool::ConnectionPool(Connector connector, wire::HelloRequest hello)
    : m_connector(std::move(connector)), m_hello(std::move(hello)) {}

ConnectionPool::~ConnectionPool() { shutdownAll(); }

std::unique_ptr<ConnectionPool::Connection> ConnectionPool::connect() {
  auto connection = std::make_unique<Connection>();
  connection->transport = m_connector();
  wire::encodeRequest<wire::CallId::Hello>(m_hello, connection->frame);
  wire::HelloReply reply;
  try {
    connection->transport->send(connection->frame);
    connection->transport->receive(connection->payload);
    wire::Decoder decoder(connection->payload);
    std::uint64_t rv = 0;
    decoder.read(rv);
    if (rv != CKR_OK) {
      throw DaemonUnreachable("dojangd refused the connection");
    }
    decoder.read(reply);
  } catch (const wire::TransportClosed& error) {
    throw DaemonUnreachable(std::string("dojangd closed the connection: ") + error.what());
  } catch (const wire::MalformedFrame& error) {
    throw DaemonUnreachable(std::string("dojangd answered nonsense: ") + error.what());
  }
  bool restarted = false;
  {
    std::lock_guard lock(m_mutex);
    if (!m_daemonInstance.empty() && m_daemonInstance != reply.daemonInstance) {
      restarted = true;
      m_idle.clear();  // those went to the old daemon
    }
    m_daemonInstance = reply.daemonInstance;
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
