// The transmission layer between vpcd and the PIV application (ISO 7816-4 5.1 and 5.3): parses
// short and extended APDUs, joins command chains (CLA bit 0x10), splits long answers into 61xx +
// GET RESPONSE for short APDUs, and appends one line per received APDU to the APDU log.
#pragma once

#include <filesystem>
#include <optional>

#include "tests/virtual_piv/piv_applet.h"

namespace dojang::virtual_piv {

class CardChannel final {
 public:
  // `apduLog` empty: no log.
  CardChannel(PivApplet& applet, std::filesystem::path apduLog);

  // One command APDU in, the response APDU (data + SW1 SW2) out.
  Bytes transmit(const Bytes& apdu);
  // Power off, reset or removal: no chain and no pending answer survive.
  void reset();

 private:
  Response dispatch(const Bytes& apdu, bool& extended, std::size_t& expected);
  void log(const Bytes& apdu, std::uint16_t sw) const;

  PivApplet& m_applet;
  std::filesystem::path m_apduLog;
  std::optional<Command> m_chain;  // the commands of an unfinished chain, data joined
  Bytes m_pending;                 // what GET RESPONSE still has to give
};

}  // namespace dojang::virtual_piv
