// Fault injection for the renewal's crash tests (tests/integration/renewal_faults_test.cc). Only
// the test-only `dojang-with-faults` is built with DOJANG_FAULT_POINTS; in the installed `dojang`
// every faultPoint() is an empty inline function, so no environment variable can stop a renewal.
//
// With DOJANG_FAULT_POINTS, the process kills itself with SIGKILL (no cleanup, as a power loss)
// when $DOJANG_FAULT_AT names the point reached, or stops with SIGSTOP when also
// DOJANG_FAULT_ACTION=stop, so that a test can change the world (kill dojangd) before SIGCONT.
#pragma once

#ifdef DOJANG_FAULT_POINTS
#include <signal.h>

#include <cstdlib>
#include <cstring>
#endif

namespace dojang::renewal {

#ifdef DOJANG_FAULT_POINTS
inline void faultPoint(const char* name) {
  const char* at = std::getenv("DOJANG_FAULT_AT");
  if (at == nullptr || std::strcmp(at, name) != 0) {
    return;
  }
  const char* action = std::getenv("DOJANG_FAULT_ACTION");
  (void)::raise(action != nullptr && std::strcmp(action, "stop") == 0 ? SIGSTOP : SIGKILL);
}
#else
inline void faultPoint(const char* /*name*/) {}
#endif

}  // namespace dojang::renewal
