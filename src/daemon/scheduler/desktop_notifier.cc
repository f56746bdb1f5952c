#include "src/daemon/scheduler/desktop_notifier.h"

#include "src/daemon/log.h"

#ifdef DOJANG_HAVE_SD_BUS
#include <systemd/sd-bus.h>

#include <cstdint>
#include <cstring>
#endif

namespace dojang::daemon {

#ifdef DOJANG_HAVE_SD_BUS

namespace {

// Owners for the bus connection, a message and an error: released on every way out.
class Bus final {
 public:
  Bus() = default;
  ~Bus() { sd_bus_flush_close_unref(m_bus); }
  Bus(const Bus&) = delete;
  Bus& operator=(const Bus&) = delete;
  sd_bus** out() noexcept { return &m_bus; }
  [[nodiscard]] sd_bus* get() const noexcept { return m_bus; }

 private:
  sd_bus* m_bus = nullptr;
};

class Message final {
 public:
  Message() = default;
  ~Message() { sd_bus_message_unref(m_message); }
  Message(const Message&) = delete;
  Message& operator=(const Message&) = delete;
  sd_bus_message** out() noexcept { return &m_message; }

 private:
  sd_bus_message* m_message = nullptr;
};

class BusError final {
 public:
  BusError() = default;
  ~BusError() { sd_bus_error_free(&m_error); }
  BusError(const BusError&) = delete;
  BusError& operator=(const BusError&) = delete;
  sd_bus_error* get() noexcept { return &m_error; }
  [[nodiscard]] std::string text() const { return m_error.message != nullptr ? m_error.message : ""; }

 private:
  // All fields zero is SD_BUS_ERROR_NULL, whose C compound literal is not C++.
  sd_bus_error m_error{};
};

}  // namespace

bool notifyDesktop(const std::string& summary, const std::string& body) {
  Bus bus;
  if (const int rv = sd_bus_open_user(bus.out()); rv < 0) {
    logDebug(std::string("desktop notification skipped: no session bus (") + std::strerror(-rv) + ")");
    return false;
  }
  // A stuck notification server must not hold the scheduler for sd-bus's default 25 s.
  (void)sd_bus_set_method_call_timeout(bus.get(), 5'000'000);
  BusError error;
  Message reply;
  // Notify(app_name s, replaces_id u, app_icon s, summary s, body s, actions as, hints a{sv},
  // expire_timeout i): no actions, no hints, the server's default timeout.
  const int rv = sd_bus_call_method(
      bus.get(), "org.freedesktop.Notifications", "/org/freedesktop/Notifications",
      "org.freedesktop.Notifications", "Notify", error.get(), reply.out(), "susssasa{sv}i", "dojang",
      std::uint32_t{0}, "security-high", summary.c_str(), body.c_str(), 0u, 0u, std::int32_t{-1});
  if (rv < 0) {
    logDebug("desktop notification not shown: " + (error.text().empty() ? std::strerror(-rv) : error.text()));
    return false;
  }
  return true;
}

#else

bool notifyDesktop(const std::string& summary, const std::string&) {
  logDebug("desktop notification skipped (built without libsystemd): " + summary);
  return false;
}

#endif

}  // namespace dojang::daemon
