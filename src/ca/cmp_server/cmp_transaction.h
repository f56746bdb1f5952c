// What the two halves of CmpService share: the state of one CMP transaction, and the log. The
// transaction table and OpenSSL's callbacks are in cmp_service.cc, the CA's decisions on
// certificate and revocation requests in cmp_decisions.cc.
#pragma once

#include <openssl/cmp.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>

#include "src/ca/cmp_server/cmp_service.h"
#include "src/ca/cmp_server/rejections.h"
#include "src/ca/store/ca_store.h"
#include "src/common/ossl/owners.h"

namespace dojang::ca {

// State of one CMP transaction, from its first request to its certConf (or rejection).
struct CmpTransaction final {
  CmpService* service = nullptr;
  std::mutex serving;  // an OSSL_CMP_SRV_CTX is not thread-safe: one message of it at a time
  CmpSrvCtxPtr server;
  std::optional<EnrolmentCode> code;        // MAC-authenticated issuance with this code
  std::optional<Rejection> decidedRejection; // reached before OpenSSL could run our callbacks
  X509Ptr issued;                           // waiting for certConf
  // Also read by pruneTransactions, under the map's lock rather than `serving`.
  std::atomic<int64_t> lastActivity{0};
  std::atomic<bool> finished{false};
};

// One write per line, so lines of concurrent requests do not interleave.
void logLine(const std::string& line);

// "ir", "kur", ...: a PKIBody type as log lines and messages name it.
std::string bodyName(int bodyType);

}  // namespace dojang::ca
