// A connection to the card in one reader (SCardConnect/SCardDisconnect) and the transaction
// (SCardBeginTransaction/SCardEndTransaction) that every exchange with it runs in. APDUs can only
// be sent through a CardTransaction, so no caller can talk to the card outside one.
#pragma once

#include <winscard.h>

#include <span>
#include <string>

#include "drivers/pcsc/apdu.h"
#include "drivers/pcsc/context.h"

namespace dojang::pcsc {

class CardTransaction;

class CardConnection final {
 public:
  // Shared access, T=0 or T=1. Throws TokenRemoved when there is no card.
  CardConnection(const Context& context, std::string reader);
  CardConnection(CardConnection&& other) noexcept;
  CardConnection& operator=(CardConnection&& other) noexcept;
  CardConnection(const CardConnection&) = delete;
  CardConnection& operator=(const CardConnection&) = delete;
  ~CardConnection();

  [[nodiscard]] const std::string& reader() const noexcept { return m_reader; }

 private:
  friend class CardTransaction;
  // SCardReconnect after another program reset the card (SCARD_W_RESET_CARD).
  void reconnect();
  // After an exchange failed: whether the card has left the reader. pcscd notices a removal
  // only at its next look at the reader, so this asks again for a short while before it says no.
  [[nodiscard]] bool cardGone() const;
  void disconnect() noexcept;

  std::string m_reader;
  SCARDHANDLE m_handle = 0;
  DWORD m_protocol = 0;
  bool m_connected = false;
};

class CardTransaction final : public ApduChannel {
 public:
  // Begins the transaction. A card reset since the last one (SCARD_W_RESET_CARD) is handled by
  // reconnecting; wasReset() then tells the caller that the card's state (selected application,
  // verified PIN) is gone.
  explicit CardTransaction(CardConnection& connection);
  CardTransaction(const CardTransaction&) = delete;
  CardTransaction& operator=(const CardTransaction&) = delete;
  ~CardTransaction() override;

  [[nodiscard]] bool wasReset() const noexcept { return m_wasReset; }
  // A card pulled in the middle of the exchange throws TokenRemoved (CKR_DEVICE_REMOVED), whatever
  // SCardTransmit made of it (a failure, or an answer without a status word).
  Bytes transmit(std::span<const std::uint8_t> command) override;

 private:
  CardConnection& m_connection;
  bool m_wasReset = false;
};

}  // namespace dojang::pcsc
