// One card, one slot. When a native driver (PIV over PC/SC) and a vendor module (OpenSC, ykcs11)
// both reach the card in a reader, dojangd shows it once, through the native driver: the vendor
// driver is wrapped, and its slots whose CK_SLOT_INFO.slotDescription names a reader the native
// driver serves are left out. Both OpenSC and ykcs11 put the reader name there (cut to 64
// characters), so the match is by reader name (see PivDriver::servesSlotDescription; checked
// against OpenSC 0.23 and ykcs11 2.2 in tests/integration/piv_hotplug_test). A description that
// matches the native driver's reader patterns is left out even before that driver has listed
// the reader (pcscd restarting, a reader plugged in), since a slot once numbered stays. A slot
// left out keeps its slot ID and loses its token, as for any slot that goes away (SlotTable).
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "drivers/token/token.h"

namespace dojang::daemon {

class ReaderDedupe final : public token::Driver {
 public:
  using ServedNatively = std::function<bool(const std::string& slotDescription)>;
  ReaderDedupe(std::unique_ptr<token::Driver> inner, ServedNatively servedNatively);

  [[nodiscard]] std::string name() const override { return m_inner->name(); }
  [[nodiscard]] std::string location() const override { return m_inner->location(); }
  std::vector<token::SlotDescription> slots() override;
  std::unique_ptr<token::Token> openToken(const std::string& slotKey) override;
  // False at once: what the native driver serves changes without an event of the inner driver
  // (a card found to be no PIV card), so the daemon polls this one.
  bool waitForChange() override { return false; }
  void cancelWait() override { m_inner->cancelWait(); }

 private:
  std::unique_ptr<token::Driver> m_inner;
  ServedNatively m_servedNatively;
};

}  // namespace dojang::daemon
