// The certificates on every present token, read by dojangd itself: certificates are public
// objects, so the daemon's own client reads them in a read-only session through TokenAccess, the
// one policy layer, exactly as a client without a login would.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "src/daemon/slot_table.h"

namespace dojang::daemon {

struct TokenCertificate {
  std::string tokenLabel;
  std::string tokenSerial;
  std::string label;
  std::vector<std::uint8_t> id;   // CKA_ID
  std::vector<std::uint8_t> der;  // CKA_VALUE
};

struct TokenPresence {
  std::string label;
  std::string serial;
};

struct TokenCertificates {
  std::vector<TokenPresence> tokens;
  std::vector<TokenCertificate> certificates;
  std::vector<std::string> problems;  // a token that could not be read, for the log
};

// Reads every token in `slots`; a token that fails (removed meanwhile) is named in `problems`.
[[nodiscard]] TokenCertificates readTokenCertificates(SlotTable& slots);

}  // namespace dojang::daemon
