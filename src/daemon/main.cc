// dojangd: one per user; owns every token and serves it to dojang-pkcs11.so clients.
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <iostream>
#include <memory>
#include <thread>

#include "drivers/piv/piv_driver.h"
#include "drivers/vendor_module/vendor_driver.h"
#include "src/common/errors/error.h"
#include "src/common/wire/socket_path.h"
#include "src/daemon/config.h"
#include "src/daemon/driver_dedupe.h"
#include "src/daemon/log.h"
#include "src/daemon/prompting/pin_prompter.h"
#include "src/daemon/scheduler/renewal_scheduler.h"
#include "src/daemon/server.h"
#include "src/daemon/service.h"
#include "src/daemon/slot_table.h"
#include "src/renewal/journal/journal.h"

namespace {

using namespace std::string_literals;

// Forks; the parent returns only when the child is serving (or failed), so whoever started
// us (the module's autostart) can connect as soon as we exit.
int daemonizeAndWait(int& readyFd) {
  int pipeFds[2];
  if (::pipe2(pipeFds, O_CLOEXEC) != 0) {
    return -1;
  }
  const pid_t child = ::fork();
  if (child < 0) {
    return -1;
  }
  if (child > 0) {
    ::close(pipeFds[1]);
    char status = 1;
    const bool got = ::read(pipeFds[0], &status, 1) == 1;
    std::_Exit(got && status == 0 ? 0 : 1);
  }
  ::close(pipeFds[0]);
  ::setsid();
  readyFd = pipeFds[1];
  return 0;
}

void reportReady(int& readyFd, bool ok) {
  if (readyFd >= 0) {
    const char status = ok ? 0 : 1;
    (void)!::write(readyFd, &status, 1);
    ::close(readyFd);
    readyFd = -1;
  }
}

// The thread that takes SIGTERM, SIGINT and SIGHUP with sigwait, so no handler runs inside a
// lock. Joined on every way out of main(): an exception must never unwind past a joinable
// std::thread, which would abort the daemon and end every client's sessions.
class SignalWatcher final {
 public:
  SignalWatcher(const sigset_t& signals, std::function<void(int)> onSignal)
      : m_thread([signals, onSignal = std::move(onSignal)] {
          int received = 0;
          sigwait(&signals, &received);
          onSignal(received);
        }) {}
  SignalWatcher(const SignalWatcher&) = delete;
  SignalWatcher& operator=(const SignalWatcher&) = delete;
  ~SignalWatcher() {
    // If no signal came, send one so that sigwait returns.
    ::pthread_kill(m_thread.native_handle(), SIGTERM);
    m_thread.join();
  }

 private:
  std::thread m_thread;
};

// Each connection takes a descriptor: make room for the configured number, as far as the hard
// limit allows, and say so when it does not.
void ensureDescriptorsFor(std::size_t connections) {
  constexpr rlim_t kOthers = 64;  // the listening socket, backends, token files, the log
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    return;
  }
  const rlim_t wanted = static_cast<rlim_t>(connections) + kOthers;
  if (limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < wanted) {
    limit.rlim_cur = limit.rlim_max == RLIM_INFINITY ? wanted : std::min(wanted, limit.rlim_max);
    ::setrlimit(RLIMIT_NOFILE, &limit);
    if (limit.rlim_cur < wanted) {
      dojang::daemon::logWarning("the open-file limit (" + std::to_string(limit.rlim_cur) +
                                 ") is too low for max_connections = " + std::to_string(connections) +
                                 "; connections beyond it wait until others close");
    }
  }
}

void redirectOutput(const std::string& logPath) {
  const int devNull = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  const int logFd = ::open(logPath.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  ::dup2(devNull, STDIN_FILENO);
  ::dup2(devNull, STDOUT_FILENO);
  ::dup2(logFd >= 0 ? logFd : devNull, STDERR_FILENO);
}

// The renewal scheduler, or none when it cannot start: renewals are a service on top of the
// tokens, and a failure there must never keep dojangd from serving them.
std::unique_ptr<dojang::daemon::RenewalScheduler> startScheduler(dojang::daemon::SlotTable& slots,
                                                                 const dojang::daemon::Config& config,
                                                                 const std::string& socketPath) {
  try {
    dojang::daemon::SchedulerSettings settings;
    settings.schedule = config.renewal;
    settings.socketPath = std::filesystem::absolute(socketPath).string();
    settings.databasePath = dojang::renewal::Journal::defaultPath();
    settings.profilesPath = dojang::daemon::defaultProfilesPath();
    return std::make_unique<dojang::daemon::RenewalScheduler>(slots, std::move(settings));
  } catch (const std::exception& error) {
    dojang::daemon::logError(std::string("renewal scheduler not started: ") + error.what());
    return nullptr;
  }
}

}  // namespace

int main(int argc, char** argv) {
  using namespace dojang;
  CLI::App app{"dojangd: keeps tokens for one user and serves them over PKCS#11"};
  bool foreground = false;
  bool daemonize = false;
  bool verbose = false;
  std::string socketPath = wire::defaultSocketPath();
  std::optional<std::string> configPath;
  app.add_flag("--foreground,-f", foreground, "stay in the foreground and log to stderr (the default)");
  app.add_flag("--daemonize", daemonize, "detach; return once the socket is ready");
  app.add_flag("--verbose,-v", verbose, "log every failed call");
  app.add_option("--socket", socketPath,
                 "socket path (also $DOJANG_SOCKET); under systemd's dojangd.socket, the socket it passes");
  app.add_option("--config", configPath, "config file (default $XDG_CONFIG_HOME/dojang/dojangd.toml)");
  CLI11_PARSE(app, argc, argv);
  daemon::setVerbose(verbose);

  // Our own module refuses to run inside this process, wherever it might be loaded from.
  ::setenv("DOJANG_INSIDE_DAEMON", "1", 1);
  ::signal(SIGPIPE, SIG_IGN);

  int readyFd = -1;
  if (daemonize && !foreground) {
    if (daemonizeAndWait(readyFd) != 0) {
      std::cerr << "dojangd: cannot fork\n";
      return 1;
    }
    std::error_code ignored;
    std::filesystem::create_directories(std::filesystem::path(socketPath).parent_path(), ignored);
    redirectOutput(socketPath + ".log");
  }

  // SIGTERM and SIGINT are taken by one thread with sigwait, so no handler runs inside a lock.
  sigset_t stopSignals;
  sigemptyset(&stopSignals);
  sigaddset(&stopSignals, SIGTERM);
  sigaddset(&stopSignals, SIGINT);
  sigaddset(&stopSignals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &stopSignals, nullptr);

  try {
    // Under systemd's dojangd.socket the socket is systemd's: its path is the one clients use.
    const auto inherited = daemon::inheritedSocket();
    const auto socketOwner = inherited ? std::make_unique<daemon::ListeningSocket>(*inherited)
                                       : std::make_unique<daemon::ListeningSocket>(socketPath);
    daemon::ListeningSocket& socket = *socketOwner;
    if (inherited) {
      daemon::logInfo("serving the socket systemd passed: " + socket.path());
    }
    const auto config = daemon::loadConfig(configPath);
    daemon::logInfo("configuration: " + config.source);

    std::vector<std::unique_ptr<token::Driver>> drivers;
    std::vector<wire::BackendStatus> backends;
    // The native PIV driver comes after the vendor modules, so their slot IDs stay as they were.
    std::unique_ptr<piv::PivDriver> pivDriver;
    if (config.piv.enabled) {
      pivDriver = std::make_unique<piv::PivDriver>(
          config.piv, [](const std::string& text) { daemon::logWarning("piv: " + text); });
    }
    for (const auto& backend : config.backends) {
      try {
        std::unique_ptr<token::Driver> driver =
            std::make_unique<vendor::VendorDriver>(backend.modulePath, backend.name);
        if (pivDriver) {
          // One card, one slot: a card the PIV driver serves is left out of this module's slots.
          driver = std::make_unique<daemon::ReaderDedupe>(
              std::move(driver), [native = pivDriver.get()](const std::string& description) {
                return native->servesSlotDescription(description);
              });
        }
        drivers.push_back(std::move(driver));
        backends.push_back({backend.name, backend.modulePath, "loaded"});
        daemon::logInfo("backend " + backend.name + ": " + backend.modulePath);
      } catch (const Error& error) {
        backends.push_back({backend.name, backend.modulePath, error.what()});
        daemon::logError("backend " + backend.name + " not loaded: " + error.what());
      }
    }
    if (pivDriver) {
      // Its reader list first, so that the vendor modules' first scan already leaves its cards out.
      try {
        (void)pivDriver->slots();
      } catch (const Error& error) {
        daemon::logWarning("driver piv: " + std::string(error.what()));
      }
      backends.push_back({"piv", pivDriver->location(), "loaded"});
      daemon::logInfo("driver piv: " + pivDriver->location());
      drivers.push_back(std::move(pivDriver));
    }
    if (config.backends.empty() && !config.piv.enabled) {
      daemon::logWarning("no backends configured and OpenSC is not installed: no tokens will appear");
    }

    daemon::SlotTable slots(std::move(drivers));
    slots.setPinSettings(config.pin);
    slots.rescan();
    slots.startMonitoring(config.pollInterval);
    daemon::Service service(slots, backends);
    const daemon::PinPrompter prompter(config.pin);
    service.setPinAsker([&prompter](const daemon::Client& client, const daemon::PromptNeed& need,
                                    const std::function<bool()>& callAlive) {
      return prompter.ask(client, need, callAlive);
    });
    ensureDescriptorsFor(config.connections.maxConnections);
    daemon::Server server(service, socket, config.connections);
    auto scheduler = startScheduler(slots, config, socket.path());
    {
      const SignalWatcher signals(stopSignals, [&server](int received) {
        if (received != 0) {
          daemon::logInfo("signal "s + ::strsignal(received) + ": shutting down");
        }
        server.stop();
      });
      reportReady(readyFd, true);
      daemon::notifyReady();
      server.run();
      daemon::notifyStopping();
    }
    scheduler.reset();
    slots.stopMonitoring();
    return 0;
  } catch (const daemon::AlreadyRunning& running) {
    daemon::logInfo(running.what());
    reportReady(readyFd, true);
    return 0;
  } catch (const std::exception& error) {
    daemon::logError(error.what());
    reportReady(readyFd, false);
    return 1;
  }
}
