#include "drivers/pcsc/card.h"

#include <utility>

#include "src/common/errors/foreign_errors.h"

namespace dojang::pcsc {

namespace {
// Extended APDU answers plus the status word.
constexpr DWORD kMaxAnswer = 65536 + 2;
}  // namespace

CardConnection::CardConnection(const Context& context, std::string reader) : m_reader(std::move(reader)) {
  checkPcsc(SCardConnect(context.handle(), m_reader.c_str(), SCARD_SHARE_SHARED,
                         SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1, &m_handle, &m_protocol),
            "SCardConnect");
  m_connected = true;
}

CardConnection::CardConnection(CardConnection&& other) noexcept
    : m_reader(std::move(other.m_reader)),
      m_handle(std::exchange(other.m_handle, 0)),
      m_protocol(other.m_protocol),
      m_connected(std::exchange(other.m_connected, false)) {}

CardConnection& CardConnection::operator=(CardConnection&& other) noexcept {
  if (this != &other) {
    disconnect();
    m_reader = std::move(other.m_reader);
    m_handle = std::exchange(other.m_handle, 0);
    m_protocol = other.m_protocol;
    m_connected = std::exchange(other.m_connected, false);
  }
  return *this;
}

CardConnection::~CardConnection() { disconnect(); }

void CardConnection::disconnect() noexcept {
  if (m_connected) {
    (void)SCardDisconnect(m_handle, SCARD_LEAVE_CARD);  // nothing to do about a failure on the way out
    m_connected = false;
  }
}

void CardConnection::reconnect() {
  checkPcscCard(SCardReconnect(m_handle, SCARD_SHARE_SHARED, SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1, SCARD_LEAVE_CARD,
                           &m_protocol),
            "SCardReconnect");
}

CardTransaction::CardTransaction(CardConnection& connection) : m_connection(connection) {
  LONG rv = SCardBeginTransaction(m_connection.m_handle);
  if (rv == SCARD_W_RESET_CARD) {
    m_connection.reconnect();
    m_wasReset = true;
    rv = SCardBeginTransaction(m_connection.m_handle);
  }
  checkPcscCard(rv, "SCardBeginTransaction");
}

CardTransaction::~CardTransaction() {
  // The card keeps its state (selected application, verified PIN) for our next transaction.
  (void)SCardEndTransaction(m_connection.m_handle, SCARD_LEAVE_CARD);
}

Bytes CardTransaction::transmit(std::span<const std::uint8_t> command) {
  const SCARD_IO_REQUEST* pci = m_connection.m_protocol == SCARD_PROTOCOL_T0 ? SCARD_PCI_T0 : SCARD_PCI_T1;
  Bytes answer(kMaxAnswer);
  DWORD length = kMaxAnswer;
  checkPcscCard(SCardTransmit(m_connection.m_handle, pci, command.data(), static_cast<DWORD>(command.size()), nullptr,
                          answer.data(), &length),
            "SCardTransmit");
  answer.resize(length);
  return answer;
}

}  // namespace dojang::pcsc
