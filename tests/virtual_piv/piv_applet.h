// The PIV card application (NIST SP 800-73-4 Part 2) of the virtual card: one complete command in
// (after chaining), one answer out (before GET RESPONSE splitting). Keeps the security status of
// the current power cycle; every change to the card's memory goes through `persist`.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "tests/virtual_piv/card_state.h"
#include "tests/virtual_piv/tlv.h"

namespace dojang::virtual_piv {

struct Command {
  std::uint8_t cla = 0;
  std::uint8_t ins = 0;
  std::uint8_t p1 = 0;
  std::uint8_t p2 = 0;
  Bytes data;
};

struct Response {
  Bytes data;
  std::uint16_t sw = 0x9000;
};

// What a YubiKey answers to its own GET VERSION (INS FD) and GET SERIAL (INS F8).
struct YubicoIdentity {
  std::uint8_t major = 5;
  std::uint8_t minor = 4;
  std::uint8_t patch = 3;
  std::uint32_t serial = 10000001;
};

class PivApplet final {
 public:
  PivApplet(CardState& state, std::function<void()> persist, std::optional<YubicoIdentity> yubico,
            bool hasOpenPgp = false);

  Response process(const Command& command);
  // Power off, reset, or the card leaving the reader: nothing stays verified or authenticated.
  void resetSecurityStatus();

 private:
  Response select(const Command& command);
  Response getData(const Command& command) const;
  Response putData(const Command& command);
  Response verify(const Command& command);
  Response changeReferenceData(const Command& command);
  Response resetRetryCounter(const Command& command);
  Response generalAuthenticate(const Command& command);
  Response authenticateManagementKey(const Command& command, const std::vector<TlvItem>& items);
  Response useKey(const Command& command, const std::vector<TlvItem>& items);
  Response generateKeyPair(const Command& command);
  Response setManagementKey(const Command& command);

  // Compares with the counter of `reference`: 9000, 63Cx (x tries left) or 6983 (blocked).
  std::uint16_t checkReferenceData(ReferenceData& reference, const Bytes& candidate);

  CardState& m_state;
  std::function<void()> m_persist;
  std::optional<YubicoIdentity> m_yubico;
  // --openpgp-applet: a second application (OpenPGP's AID) that another program can select, as
  // gpg does on a YubiKey; PIV then answers nothing but its own SELECT.
  bool m_hasOpenPgp = false;
  bool m_pivSelected = true;

  bool m_pinVerified = false;
  // One operation with a PIN-always key (9C) per successful VERIFY.
  bool m_pinAlwaysGranted = false;
  bool m_managementAuthenticated = false;
  // The pending half of a management-key authentication: the witness the card sent (mutual) or
  // the challenge it sent (external); empty when none is pending.
  Bytes m_witness;
  Bytes m_challenge;
};

}  // namespace dojang::virtual_piv
