#include "drivers/pcsc/card.h"

#include <chrono>
#include <thread>
#include <utility>

#include "src/common/errors/foreign_errors.h"

namespace dojang::pcsc {

namespace {
// Extended APDU answers plus the status word.
constexpr DWORD kMaxAnswer = 65536 + 2;
// pcscd looks at a reader a few times a second; a card gone for longer than this was seen gone.
constexpr std::chrono::milliseconds kRemovalGrace{2000};
constexpr std::chrono::milliseconds kRemovalLook{50};
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

bool CardConnection::cardGone() const {
  const auto deadline = std::chrono::steady_clock::now() + kRemovalGrace;
  while (true) {
    DWORD readerLength = 0;
    DWORD state = 0;
    DWORD protocol = 0;
    BYTE atr[MAX_ATR_SIZE];
    DWORD atrLength = sizeof atr;
    const LONG rv = SCardStatus(m_handle, nullptr, &readerLength, &state, &protocol, atr, &atrLength);
    switch (rv) {
      case SCARD_W_REMOVED_CARD:
      case SCARD_E_NO_SMARTCARD:
      case SCARD_E_READER_UNAVAILABLE:
      case SCARD_E_INVALID_HANDLE:  // pcscd went away and took the handle with it
      case SCARD_E_NO_SERVICE:
      case SCARD_E_SERVICE_STOPPED:
      case SCARD_F_COMM_ERROR:
        return true;
      case SCARD_W_RESET_CARD:
        return false;  // still there; another program reset it
      case SCARD_S_SUCCESS:
        if ((state & SCARD_ABSENT) != 0) {
          return true;
        }
        break;
      default:
        break;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      return false;
    }
    std::this_thread::sleep_for(kRemovalLook);
  }
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
  const LONG rv = SCardTransmit(m_connection.m_handle, pci, command.data(), static_cast<DWORD>(command.size()),
                                nullptr, answer.data(), &length);
  if (rv == SCARD_S_SUCCESS && length >= 2) {
    answer.resize(length);
    return answer;
  }
  // A card pulled mid-exchange shows first as a failed transmission (SCARD_E_NOT_TRANSACTED) or
  // an empty answer, before pcscd has noticed that it is gone: that is a removal, not a broken card.
  if (m_connection.cardGone()) {
    fail(CKR_DEVICE_REMOVED, "SCardTransmit: the card left " + m_connection.reader() + " during the exchange");
  }
  checkPcscCard(rv, "SCardTransmit");
  answer.resize(length);
  return answer;  // too short: the caller's parse says so
}

}  // namespace dojang::pcsc
