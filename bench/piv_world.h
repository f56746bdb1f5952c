// The world dojang-pivbench measures in: the shared pcscd lock, pcscd with a private vpcd reader,
// the virtual PIV card in it (its state in a file, so it keeps its keys when pulled), and a
// dojangd serving that reader through the native PIV driver. The pieces are the integration
// tests' own (tests/support/pcscd_process.h); dojangd is started here rather than through
// DojangdProcess because the bench wants no test token in it, only an empty SoftHSM slot (a
// [[backend]] must be named, or dojangd would load OpenSC as its default backend, and OpenSC
// would then talk to the card too).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "src/common/cryptoki/cryptoki.h"
#include "tests/support/background_process.h"
#include "tests/support/pcscd_process.h"

namespace dojang::bench {

struct PivWorldOptions {
  std::filesystem::path work;  // an empty directory of the caller's, removed by the caller
  std::string dojangd;         // the dojangd binary
  std::string module;          // dojang-pkcs11.so
};

class PivWorld final {
 public:
  static constexpr const char* kReaderFriendlyName = "dojang PIV bench";
  static constexpr const char* kPin = "123456";

  // Takes the lock (waiting for other pcscd users: say so before), starts pcscd, inserts the card, starts
  // dojangd and points this process's environment at it (DOJANG_SOCKET, DOJANG_NO_AUTOSTART).
  explicit PivWorld(const PivWorldOptions& options);
  ~PivWorld();
  PivWorld(const PivWorld&) = delete;
  PivWorld& operator=(const PivWorld&) = delete;

  // Through dojang with pkcs11-tool and openssl: an EC P-256 key generated in 9A (CKA_ID 01) and
  // an RSA-2048 key in 9C (CKA_ID 02), each with a certificate from a throwaway CA.
  void provision(CK_SLOT_ID slot);

  // The card in, or out (SIGTERM: it saves its state and closes its vpcd connection).
  void insertCard();
  void removeCard();

  [[nodiscard]] std::string readerName() const { return m_pcscd.readerName(); }
  [[nodiscard]] std::filesystem::path apduLog() const { return m_card.apduLog(); }
  [[nodiscard]] std::size_t apduCount() const { return m_card.apduCount(); }
  void clearApduLog() { m_card.clearApduLog(); }
  [[nodiscard]] const std::string& module() const noexcept { return m_module; }

 private:
  void startDojangd(const std::string& binary);
  void run(const std::vector<std::string>& argv) const;
  void provisionKey(CK_SLOT_ID slot, const std::string& id, const std::string& keyType) const;

  std::filesystem::path m_work;
  std::string m_module;
  test::PcscdLock m_lock;
  test::PcscdProcess m_pcscd;
  test::VirtualPivCard m_card;
  std::unique_ptr<test::BackgroundProcess> m_dojangd;
};

}  // namespace dojang::bench
