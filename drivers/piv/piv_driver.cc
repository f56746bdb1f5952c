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

std::shared_ptr<SlotOverlay> PivDriver::overlay() {
  const std::lock_guard lock(m_mutex);
  if (m_overlayOpened) {
    return m_overlay;
  }
  m_overlayOpened = true;
  std::string path = m_settings.overlayFile;
  if (path.empty()) {
    const auto fallback = SlotOverlay::defaultPath();
    if (!fallback) {
      m_warn("neither XDG_STATE_HOME nor HOME is set: PIV cards keep labels, application CKA_IDs and CKA_LOCAL "
             "only while they stay in");
      return nullptr;
    }
    path = fallback->string();
  }
  try {
    m_overlay = std::make_shared<SlotOverlay>(path);
  } catch (const Error& error) {
    m_warn("the PIV slot overlay " + path + " cannot be opened (" + error.what() +
           "); PIV cards keep labels, application CKA_IDs and CKA_LOCAL only while they stay in");
  }
  return m_overlay;
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
    const std::lock_guard lock(m_mutex);
    m_readers.clear();
    m_foreignCards.clear();
    return out;
  }
  std::set<std::string> stillForeign;
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
      stillForeign.insert(reader);
    }
    out.push_back(std::move(slot));
  }
  const std::lock_guard lock(m_mutex);
  m_readers = readers;
  // A card pulled out is no longer the foreign one; the next card is tried afresh.
  std::erase_if(m_foreignCards, [&](const std::string& reader) { return stillForeign.count(reader) == 0; });
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
  try {
    return std::make_unique<PivToken>(std::make_shared<PivCard>(current, slotKey, m_settings, m_warn, overlay()));
  } catch (const Error& error) {
    if (error.rv() == CKR_TOKEN_NOT_RECOGNIZED) {
      const std::lock_guard lock(m_mutex);
      m_foreignCards.insert(slotKey);
    }
    throw;
  }
}

bool PivDriver::servesSlotDescription(const std::string& slotDescription) {
  constexpr std::size_t kSlotDescriptionLength = 64;  // CK_SLOT_INFO.slotDescription
  std::string wanted = slotDescription;
  while (!wanted.empty() && wanted.back() == ' ') {
    wanted.pop_back();
  }
  if (wanted.empty()) {
    return false;
  }
  const std::lock_guard lock(m_mutex);
  bool known = false;
  for (const auto& reader : m_readers) {
    const bool same = reader == wanted ||
                      (wanted.size() >= kSlotDescriptionLength - 4 && reader.compare(0, wanted.size(), wanted) == 0);
    if (same && matchesReader(reader) && m_foreignCards.count(reader) == 0) {
      return true;
    }
    known = known || same;
  }
  // A reader not listed here yet: pcscd came back, or the reader was plugged in, and the vendor
  // module looked before this driver did. Its slot must not be numbered meanwhile (a slot, once
  // numbered, stays), so the description is taken for the reader's name.
  return !known && matchesReader(wanted);
}

bool PivDriver::waitForChange() { return m_monitor.waitForChange(); }

void PivDriver::cancelWait() { m_monitor.cancel(); }

}  // namespace dojang::piv
