// token::Driver "piv": one slot per PC/SC reader whose name matches the configured patterns,
// keyed by the reader name (so a reader keeps its slot ID across re-insertions and pcscd
// restarts). Cards are read once per insertion and served from the cache after that.
#pragma once

#include <functional>
#include <set>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "drivers/pcsc/context.h"
#include "drivers/pcsc/reader_monitor.h"
#include "drivers/piv/piv_card.h"
#include "drivers/piv/piv_settings.h"
#include "drivers/token/token.h"

namespace dojang::piv {

class PivDriver final : public token::Driver {
 public:
  explicit PivDriver(PivSettings settings, PivCard::Warn warn = {});

  [[nodiscard]] std::string name() const override { return "piv"; }
  // The reader patterns, comma-separated.
  [[nodiscard]] std::string location() const override;
  // Every matching reader; none while pcscd is away (its tokens are then gone).
  std::vector<token::SlotDescription> slots() override;
  std::unique_ptr<token::Token> openToken(const std::string& slotKey) override;
  // Blocks in SCardGetStatusChange (see pcsc::ReaderMonitor).
  bool waitForChange() override;
  void cancelWait() override;

  // Whether another driver's slot with this CK_SLOT_INFO.slotDescription is a reader this driver
  // serves, so the daemon shows that card once, through this driver (src/daemon/driver_dedupe.h).
  // OpenSC and ykcs11 put the reader name there (cut to 64 characters); a reader counts as
  // served when its name matches the configured patterns and it does not hold a card found to
  // be no PIV card (that one is left to the other driver). A description naming no reader this
  // driver has listed yet counts as served when it matches the patterns itself.
  [[nodiscard]] bool servesSlotDescription(const std::string& slotDescription);
  [[nodiscard]] bool matchesReader(const std::string& reader) const;

 private:
  // The context for listing and connecting, established again when pcscd came back.
  std::shared_ptr<const pcsc::Context> context();
  void dropContext();
  // Opened at the first card; null (with a warning) when it cannot be, so cards still work.
  std::shared_ptr<SlotOverlay> overlay();

  PivSettings m_settings;
  PivCard::Warn m_warn;
  pcsc::ReaderMonitor m_monitor;
  std::mutex m_mutex;
  std::shared_ptr<const pcsc::Context> m_context;
  std::vector<std::string> m_readers;  // as last listed
  std::set<std::string> m_foreignCards;  // readers holding a card without the PIV application
  std::shared_ptr<SlotOverlay> m_overlay;
  bool m_overlayOpened = false;
};

}  // namespace dojang::piv
