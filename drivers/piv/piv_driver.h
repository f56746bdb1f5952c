// token::Driver "piv": one slot per PC/SC reader whose name matches the configured patterns,
// keyed by the reader name (so a reader keeps its slot ID across re-insertions and pcscd
// restarts). Cards are read once per insertion and served from the cache after that.
#pragma once

#include <functional>
#include <map>
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

  // The readers in which this driver serves a PIV card now: the daemon hides another driver's
  // slot for the same card (src/daemon/driver_dedupe.h).
  [[nodiscard]] std::vector<std::string> servedReaders();
  [[nodiscard]] bool matchesReader(const std::string& reader) const;

 private:
  // The context for listing and connecting, established again when pcscd came back.
  std::shared_ptr<const pcsc::Context> context();
  void dropContext();

  PivSettings m_settings;
  PivCard::Warn m_warn;
  pcsc::ReaderMonitor m_monitor;
  std::mutex m_mutex;
  std::shared_ptr<const pcsc::Context> m_context;
  std::map<std::string, std::weak_ptr<PivCard>> m_cards;  // by reader
};

}  // namespace dojang::piv
