// The round trips of Frontend, for the files that define its function groups: member templates,
// so their definitions are seen wherever they are instantiated.
#pragma once

#include <mutex>

#include "pkcs11/frontend.h"

namespace dojang::frontend {

template <wire::CallId id>
CK_RV Frontend::call(const typename wire::Call<id>::Request& request, typename wire::Call<id>::Reply& reply) {
  try {
    const CK_RV rv = m_pool.template call<id>(request, reply, true);
    return m_finalized ? CKR_CRYPTOKI_NOT_INITIALIZED : rv;
  } catch (const DaemonUnreachable&) {
    return m_finalized ? CKR_CRYPTOKI_NOT_INITIALIZED : CKR_DEVICE_ERROR;
  }
}

// A session-bound call fails locally for handles the current daemon never gave out, before the
// round trip (a handle from before a daemon restart may name someone else's session) and after
// it (the daemon may have restarted during the call).
template <wire::CallId id>
CK_RV Frontend::sessionCall(CK_SESSION_HANDLE session, const typename wire::Call<id>::Request& request,
                            typename wire::Call<id>::Reply& reply) {
  if (!sessionState(session)) {
    return CKR_SESSION_HANDLE_INVALID;
  }
  const CK_RV rv = call<id>(request, reply);
  if (rv == CKR_DEVICE_ERROR || rv == CKR_SESSION_HANDLE_INVALID) {
    std::lock_guard lock(m_mutex);
    if (!m_sessions.contains(session)) {
      return CKR_SESSION_HANDLE_INVALID;  // the daemon restarted underneath this session
    }
    if (rv == CKR_SESSION_HANDLE_INVALID) {
      m_sessions.erase(session);
    }
  }
  return rv;
}

}  // namespace dojang::frontend
