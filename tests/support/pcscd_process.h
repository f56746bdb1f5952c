// pcscd and the virtual PIV card for the integration tests. pcscd's socket path is fixed
// (/run/pcscd/pcscd.comm), so one pcscd serves the whole machine: every test that starts one holds
// a PcscdLock for its whole life and is registered `is_parallel: false`. Each test gets its own
// reader (FRIENDLYNAME) on its own vpcd port through a private reader config; the system's
// /etc/reader.conf.d is never read.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "tests/support/background_process.h"

namespace dojang::test {

// flock on /tmp/dojang-pcscd.lock, waited for in the constructor, released by the destructor.
class PcscdLock final {
 public:
  PcscdLock();
  ~PcscdLock();
  PcscdLock(const PcscdLock&) = delete;
  PcscdLock& operator=(const PcscdLock&) = delete;

 private:
  int m_fd = -1;
};

// A port P with P and P + 1 free (vpcd opens one per slot), neither the system's 35963/35964.
std::uint16_t pickVpcdPort();

class PcscdProcess final {
 public:
  // Writes DIRECTORY/reader.conf (vpcd on `port`, 0 = pickVpcdPort()), starts `pcscd -f -c` on it
  // and waits until the reader is listed. Throws std::runtime_error (with pcscd's output) when it
  // does not come up within 10 s.
  PcscdProcess(std::filesystem::path directory, std::string friendlyName, std::uint16_t port = 0);
  ~PcscdProcess();
  PcscdProcess(const PcscdProcess&) = delete;
  PcscdProcess& operator=(const PcscdProcess&) = delete;

  void stop();     // SIGTERM and wait; the socket is gone afterwards
  void start();    // after stop(): the same reader on the same port
  void restart();  // stop() then start()
  [[nodiscard]] bool running();

  // The full PC/SC name of the slot the card uses: "FRIENDLYNAME 00 00".
  [[nodiscard]] std::string readerName() const { return m_friendlyName + " 00 00"; }
  [[nodiscard]] const std::string& friendlyName() const noexcept { return m_friendlyName; }
  [[nodiscard]] std::uint16_t port() const noexcept { return m_port; }
  [[nodiscard]] std::filesystem::path logFile() const { return m_directory / "pcscd.log"; }

 private:
  std::filesystem::path m_directory;
  std::string m_friendlyName;
  std::uint16_t m_port = 0;
  std::unique_ptr<BackgroundProcess> m_process;
};

// Waits with SCardGetStatusChange until the reader reports a card with an ATR (present = true) or
// no card (false). False at the deadline.
bool waitForCard(const std::string& readerName, bool present,
                 std::chrono::milliseconds timeout = std::chrono::seconds(10));

// dojang-virtual-piv ($DOJANG_VIRTUAL_PIV) as a child: starting it inserts the card into vpcd's
// reader, stopping it (SIGTERM; it saves its state) pulls the card out.
class VirtualPivCard final {
 public:
  // DIRECTORY holds the APDU log (apdu.log) and the card's output (card.log).
  explicit VirtualPivCard(std::filesystem::path directory);
  ~VirtualPivCard();
  VirtualPivCard(const VirtualPivCard&) = delete;
  VirtualPivCard& operator=(const VirtualPivCard&) = delete;

  // `stateFile` empty: a card that forgets everything when stopped. `extraArgs` go to the card
  // (--yubikey-version 5.4.3, --management-key-algorithm aes256 --management-key HEX, ...).
  void start(std::uint16_t port, const std::filesystem::path& stateFile,
             const std::vector<std::string>& extraArgs = {});
  // Returns the card's exit status (0 after a clean SIGTERM); 0 when it was not running.
  int stop();
  [[nodiscard]] bool running();

  // APDUs received since the start or the last clearApduLog().
  [[nodiscard]] std::size_t apduCount() const;
  // The log's lines ("00 A4 04 00 len=10 -> 9000").
  [[nodiscard]] std::vector<std::string> apduLines() const;
  void clearApduLog();
  [[nodiscard]] std::filesystem::path apduLog() const { return m_directory / "apdu.log"; }

  bool waitUntilPresent(const std::string& readerName,
                        std::chrono::milliseconds timeout = std::chrono::seconds(10)) const {
    return waitForCard(readerName, true, timeout);
  }
  bool waitUntilAbsent(const std::string& readerName,
                       std::chrono::milliseconds timeout = std::chrono::seconds(10)) const {
    return waitForCard(readerName, false, timeout);
  }

  // $DOJANG_VIRTUAL_PIV; throws std::runtime_error when it is not set.
  static std::filesystem::path executable();

 private:
  std::filesystem::path m_directory;
  std::unique_ptr<BackgroundProcess> m_process;
};

}  // namespace dojang::test
