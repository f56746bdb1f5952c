#include "src/daemon/driver_dedupe.h"

#include <algorithm>

#include "src/common/errors/error.h"

namespace dojang::daemon {

ReaderDedupe::ReaderDedupe(std::unique_ptr<token::Driver> inner, ServedNatively servedNatively)
    : m_inner(std::move(inner)), m_servedNatively(std::move(servedNatively)) {}

std::vector<token::SlotDescription> ReaderDedupe::slots() {
  auto slots = m_inner->slots();
  std::erase_if(slots, [&](const token::SlotDescription& slot) { return m_servedNatively(slot.description); });
  return slots;
}

std::unique_ptr<token::Token> ReaderDedupe::openToken(const std::string& slotKey) {
  for (const auto& slot : m_inner->slots()) {
    if (slot.key == slotKey && m_servedNatively(slot.description)) {
      fail(CKR_TOKEN_NOT_PRESENT, "the card in \"" + slot.description + "\" is served by the native driver");
    }
  }
  return m_inner->openToken(slotKey);
}

}  // namespace dojang::daemon
