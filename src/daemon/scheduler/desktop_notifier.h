// Desktop notifications: org.freedesktop.Notifications.Notify on the user's session bus, with
// sd-bus (libsystemd). Built only when libsystemd is found (DOJANG_HAVE_SD_BUS); without it, or
// without a session bus (a headless login), notify() does nothing and says so in the verbose log.
#pragma once

#include <string>

namespace dojang::daemon {

// Sends one notification; returns false when it was not delivered. Never throws.
bool notifyDesktop(const std::string& summary, const std::string& body);

}  // namespace dojang::daemon
