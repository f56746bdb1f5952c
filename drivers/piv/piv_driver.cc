#include "drivers/piv/piv_driver.h"

#include <fnmatch.h>

#include "drivers/piv/piv_token.h"

namespace dojang::piv {

PivDriver::PivDriver(PivSettings settings, PivCard::Warn warn)
    : m_settings(std::move(settings)), m_warn(std::move(warn)) {
  if (!m_warn) {
    m_warn = [](const std::string&) {};
  }
  if (m_settings.readers.empty()) {
    m_settings.readers = {"*"};
  }
}

std::string PivDriver::location() const {
  std::string text;
  for (const auto& pattern : m_settings.readers) {
    text += (text.empty() ? "" : ", ") + pattern;
  }
  return "PC/SC readers " + text;
}

bool PivDriver::matchesReader(const std::string& reader) const {
  for (const auto& pattern : m_settings.readers) {
    if (fnmatch(pattern.c_str(), reader.c_str(), 0) == 0) {
      return true;
    }
  }
  return false;
}

std::shared_ptr<const pcsc::Context> PivDriver::context() {
  const std::lock_guard lock(m_mutex);
  if (!m_context) {
    m_context = std::make_shared<const pcsc::Context>();
  }
  return m_context;
}

void PivDriver::dropContext() {
  const std::lock_guard lock(m_mutex);
  m_context.reset();
}

std::vector<token::SlotDescription> PivDriver::slots() {
  std::vector<std::string> readers;
  std::shared_ptr<const pcsc::Context> current;
  for (int attempt = 0; attempt < 2; ++attempt) {
    try {
      current = context();
      readers = current->readers();
      break;
    } catch (const Error& error) {
      // pcscd restarted (our context is dead) or is not running: one fresh try, then no readers.
      dropContext();
      current.reset();
      if (error.kind() != ErrorKind::Retryable && error.kind() != ErrorKind::Fatal) {
        throw;
      }
    }
  }
  std::vector<token::SlotDescription> out;
  if (!current) {
    return out;
  }
  for (const auto& reader : readers) {
    if (!matchesReader(reader)) {
      continue;
    }
    token::SlotDescription slot;
    slot.key = reader;
    slot.description = reader;
    slot.manufacturer = "PC/SC";
    slot.flags = CKF_REMOVABLE_DEVICE | CKF_HW_SLOT;
    bool present = false;
    try {
      present = current->cardPresent(reader);
    } catch (const Error&) {
      present = false;  // the reader went away since the list
    }
    if (present) {
      slot.flags |= CKF_TOKEN_PRESENT;
    }
    out.push_back(std::move(slot));
  }
  return out;
}

std::unique_ptr<token::Token> PivDriver::openToken(const std::string& slotKey) {
  if (!matchesReader(slotKey)) {
    fail(CKR_SLOT_ID_INVALID, "not a reader of the PIV driver: \"" + slotKey + "\"");
  }
  const auto current = context();
  if (!current->cardPresent(slotKey)) {
    fail(CKR_TOKEN_NOT_PRESENT, "no card in " + slotKey);
  }
  auto card = std::make_shared<PivCard>(current, slotKey, m_settings, m_warn);
  {
    const std::lock_guard lock(m_mutex);
    m_cards[slotKey] = card;
  }
  return std::make_unique<PivToken>(std::move(card));
}

std::vector<std::string> PivDriver::servedReaders() {
  const std::lock_guard lock(m_mutex);
  std::vector<std::string> readers;
  for (const auto& [reader, weak] : m_cards) {
    if (const auto card = weak.lock(); card && !card->removed()) {
      readers.push_back(reader);
    }
  }
  return readers;
}

bool PivDriver::waitForChange() { return m_monitor.waitForChange(); }

void PivDriver::cancelWait() { m_monitor.cancel(); }

}  // namespace dojang::piv
