// The bench of piv_hotplug_test: pcscd with a reader of the test's own, the virtual PIV card in
// it (or not), and dojangd with the PIV driver for that reader; PKCS#11 helpers for
// dojang-pkcs11.so loaded in the test process, a blocking C_WaitForSlotEvent in a thread, and a
// second client process.
#pragma once

#include <chrono>
#include <future>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "src/common/cryptoki/cryptoki.h"
#include "tests/support/dojangd_process.h"
#include "tests/support/pcscd_process.h"
#include "tests/support/run_command.h"
#include "tests/support/softhsm_token.h"
#include "tests/support/temp_dir.h"

namespace dojang::test::hotplug {

inline constexpr const char* kPin = "123456";
inline constexpr auto kPatience = std::chrono::seconds(10);  // only catches hangs
inline constexpr const char* kSignedData = "signed on the PIV card, pulled and put back\n";

bool contains(const std::string& text, const std::string& part);
// A blank-padded CK_SLOT_INFO / CK_TOKEN_INFO text without its padding.
std::string trimmed(const CK_UTF8CHAR* text, std::size_t size);

// --- PKCS#11 through the module in this process (Catch2 REQUIREs inside) ---
std::vector<CK_SLOT_ID> slotList(CK_FUNCTION_LIST& p11, bool tokenPresent);
CK_SLOT_INFO slotInfo(CK_FUNCTION_LIST& p11, CK_SLOT_ID slot);
bool tokenPresent(CK_FUNCTION_LIST& p11, CK_SLOT_ID slot);
// The slot whose description is the reader's name (the PIV driver's slot for it), if any.
std::optional<CK_SLOT_ID> readerSlot(CK_FUNCTION_LIST& p11, const std::string& reader);
std::string tokenSerial(CK_FUNCTION_LIST& p11, CK_SLOT_ID slot);
// What PKCS#11 lets a call on a session of a removed token return.
bool removedRv(CK_RV rv);

// --- without Catch2 (the second client uses them) ---
// The private key with CKA_ID = id, or CK_INVALID_HANDLE (the search's CK_RV in `rv`).
CK_OBJECT_HANDLE findPrivateKey(CK_FUNCTION_LIST& p11, CK_SESSION_HANDLE session, CK_BYTE id, CK_RV& rv);
// Opens a session on `slot`, logs in (when asked) and starts a signature with key `id`.
CK_RV prepareSignature(CK_FUNCTION_LIST& p11, CK_SLOT_ID slot, CK_BYTE id, bool login, CK_SESSION_HANDLE& session,
                       CK_MECHANISM_TYPE mechanism = CKM_SHA256_RSA_PKCS);
// C_Sign over kSignedData.
CK_RV signData(CK_FUNCTION_LIST& p11, CK_SESSION_HANDLE session, std::string* signature = nullptr);
// CKF_DONT_BLOCK until an event comes (CKR_OK and the slot), or CKR_NO_EVENT at the deadline.
std::pair<CK_RV, CK_SLOT_ID> pollSlotEvent(CK_FUNCTION_LIST& p11);

// How many slots of a `pkcs11-tool -L` listing ("Slot 3 (0x3): DESCRIPTION", then "  token label
// : ..." or "  (empty)") have this description and a token.
int tokensListedFor(const std::string& listing, const std::string& description);

// A blocking C_WaitForSlotEvent(0) in its own thread. If it is still blocked when the owner dies
// (a failed test), C_Finalize ends it, as NSS does.
class SlotEventWaiter final {
 public:
  explicit SlotEventWaiter(DojangModule& module);
  ~SlotEventWaiter();
  SlotEventWaiter(const SlotEventWaiter&) = delete;
  SlotEventWaiter& operator=(const SlotEventWaiter&) = delete;

  [[nodiscard]] bool blocked(std::chrono::milliseconds look) const;
  // (CK_RV, slot) once the call returned within `patience`.
  std::optional<std::pair<CK_RV, CK_SLOT_ID>> result(std::chrono::milliseconds patience = kPatience);

 private:
  DojangModule& m_module;
  std::promise<std::pair<CK_RV, CK_SLOT_ID>> m_result;
  std::future<std::pair<CK_RV, CK_SLOT_ID>> m_future;
  std::thread m_thread;
};

// Another client process on the same card: forked before this process loads the module, it
// loads its own, opens a session, logs in and starts a signature; it signs when told to and
// reports each CK_RV through a pipe. No Catch2 in the child: it only reports and _exit()s.
class SecondClient final {
 public:
  SecondClient(CK_SLOT_ID slot, CK_BYTE keyId);
  ~SecondClient();  // SIGKILL and reap
  SecondClient(const SecondClient&) = delete;
  SecondClient& operator=(const SecondClient&) = delete;

  // The CK_RV of C_Initialize through C_SignInit; nullopt when the child said nothing in time.
  std::optional<CK_RV> prepared();
  // The CK_RV of its C_Sign.
  std::optional<CK_RV> sign();

 private:
  [[noreturn]] static void runChild(int commands, int answers, CK_SLOT_ID slot, CK_BYTE keyId);
  std::optional<CK_RV> readRv();

  pid_t m_pid = -1;
  int m_toChild = -1;
  int m_fromChild = -1;
};

// pcscd with its own reader, the virtual card (out until insert()), and dojangd with the PIV
// driver for that reader (startDaemon(); SoftHSM beside it, as the test daemon always has one).
// DOJANG_TEST_DAEMON_LOG=1 prints dojangd's log to stderr when the bench goes, to read a failure.
struct HotplugBench {
  explicit HotplugBench(const std::string& friendlyName = "dojang hotplug test");
  ~HotplugBench();
  HotplugBench(const HotplugBench&) = delete;
  HotplugBench& operator=(const HotplugBench&) = delete;

  // `moreConfig`: TOML after the [piv] table; `daemonSettings`: lines of [daemon].
  void startDaemon(const std::string& moreConfig = {}, const std::string& daemonSettings = {});
  // Starts the card on its state file and waits until pcscd sees it.
  void insert(const std::vector<std::string>& cardOptions = {});
  [[nodiscard]] std::string reader() const { return pcscd.readerName(); }
  [[nodiscard]] std::string path(const std::string& name) const { return (dir / name).string(); }

  // A program with the daemon's environment; its output goes to the test's log.
  CommandResult run(const std::vector<std::string>& argv) const;
  // pkcs11-tool through `module`: dojang's (on the reader's slot) unless told otherwise.
  CommandResult tool(std::vector<std::string> arguments, const std::string& module = {}) const;
  CommandResult userTool(std::vector<std::string> arguments, const std::string& module = {}) const;
  // Waits until dojangd shows a token in the reader's slot.
  void waitForToken() const;
  // A key generated on the card through dojang, with a certificate written for it (a PIV card
  // lists a key only through its certificate, so without one the key is unseen after the next
  // insertion); its public key as PEM. The certificate stays in cert-ID.der.
  std::string generate(const std::string& id, const std::string& keyType) const;
  // A CA-signed certificate for card key `id`, written to the card through dojang.
  void certify(const std::string& id, const std::string& publicKey) const;
  // openssl's verdict on a SHA-256 signature of kSignedData.
  bool verifies(const std::string& publicKey, const std::string& signature) const;

  PcscdLock lock;  // first: pcscd is machine-wide
  TempDir dir{"dojang-hotplug-"};
  PcscdProcess pcscd;
  VirtualPivCard card{dir.path()};
  SoftHsmToken softhsm;
  std::optional<DojangdProcess> daemon;
};

}  // namespace dojang::test::hotplug
