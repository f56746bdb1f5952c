// Cards coming and going under a running dojangd with the native PIV driver, over the real pcscd
// and vpcd with the virtual PIV card: C_WaitForSlotEvent (blocking and CKF_DONT_BLOCK) and
// NSS-style slot polling through dojang-pkcs11.so loaded in this process, stable slot IDs,
// pcscd restarted under dojangd or started after it, a card pulled in the middle of a signature
// with two clients on it, the card read back by OpenSC and ykcs11 without dojang, and one slot
// per card when the OpenSC backend sees it too.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <future>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "src/common/cryptoki/cryptoki.h"
#include "src/common/errors/error.h"
#include "tests/support/dojangd_process.h"
#include "tests/support/pcscd_process.h"
#include "tests/support/raw_wire.h"
#include "tests/support/run_command.h"
#include "tests/support/softhsm_token.h"
#include "tests/support/temp_dir.h"

namespace {

using dojang::ckRvName;
using dojang::test::CommandResult;
using dojang::test::DojangModule;
using dojang::test::eventually;

constexpr const char* kPin = "123456";
constexpr const char* kOpenscModule = "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so";
constexpr const char* kYkcs11Module = "/usr/lib/x86_64-linux-gnu/libykcs11.so.2";
constexpr auto kPatience = std::chrono::seconds(10);  // only catches hangs

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

std::string trimmed(const CK_UTF8CHAR* text, std::size_t size) {
  std::string out(reinterpret_cast<const char*>(text), size);
  while (!out.empty() && out.back() == ' ') {
    out.pop_back();
  }
  return out;
}

std::vector<CK_SLOT_ID> slotList(CK_FUNCTION_LIST& p11, bool tokenPresent) {
  CK_ULONG count = 0;
  REQUIRE(p11.C_GetSlotList(tokenPresent ? CK_TRUE : CK_FALSE, nullptr, &count) == CKR_OK);
  std::vector<CK_SLOT_ID> slots(count);
  REQUIRE(p11.C_GetSlotList(tokenPresent ? CK_TRUE : CK_FALSE, slots.data(), &count) == CKR_OK);
  slots.resize(count);
  return slots;
}

CK_SLOT_INFO slotInfo(CK_FUNCTION_LIST& p11, CK_SLOT_ID slot) {
  CK_SLOT_INFO info{};
  REQUIRE(p11.C_GetSlotInfo(slot, &info) == CKR_OK);
  return info;
}

bool tokenPresent(CK_FUNCTION_LIST& p11, CK_SLOT_ID slot) { return (slotInfo(p11, slot).flags & CKF_TOKEN_PRESENT) != 0; }

// The slot whose description is the reader's name (the PIV driver's slot for it), if any.
std::optional<CK_SLOT_ID> readerSlot(CK_FUNCTION_LIST& p11, const std::string& reader) {
  for (const CK_SLOT_ID slot : slotList(p11, false)) {
    const auto info = slotInfo(p11, slot);
    if (trimmed(info.slotDescription, sizeof info.slotDescription) == reader) {
      return slot;
    }
  }
  return std::nullopt;
}

std::string tokenSerial(CK_FUNCTION_LIST& p11, CK_SLOT_ID slot) {
  CK_TOKEN_INFO info{};
  REQUIRE(p11.C_GetTokenInfo(slot, &info) == CKR_OK);
  return trimmed(info.serialNumber, sizeof info.serialNumber);
}

// How many slots of a `pkcs11-tool -L` listing ("Slot 3 (0x3): DESCRIPTION", then "  token label
// : ..." or "  (empty)") have this description and a token.
int tokensListedFor(const std::string& listing, const std::string& description) {
  std::istringstream lines(listing);
  int count = 0;
  bool inSlot = false;
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("Slot ", 0) == 0) {
      const auto colon = line.find("): ");
      inSlot = colon != std::string::npos && line.substr(colon + 3) == description;
    } else if (inSlot && contains(line, "token label")) {
      ++count;
      inSlot = false;
    }
  }
  return count;
}

bool removedRv(CK_RV rv) { return rv == CKR_DEVICE_REMOVED || rv == CKR_SESSION_HANDLE_INVALID; }

CK_RV loginUser(CK_FUNCTION_LIST& p11, CK_SESSION_HANDLE session) {
  std::string pin = kPin;
  return p11.C_Login(session, CKU_USER, reinterpret_cast<CK_UTF8CHAR_PTR>(pin.data()), pin.size());
}

// The private key with CKA_ID = id, or CK_INVALID_HANDLE (and the CK_RV of the search in `rv`).
CK_OBJECT_HANDLE findPrivateKey(CK_FUNCTION_LIST& p11, CK_SESSION_HANDLE session, CK_BYTE id, CK_RV& rv) {
  CK_OBJECT_CLASS keyClass = CKO_PRIVATE_KEY;
  CK_ATTRIBUTE templ[] = {{CKA_CLASS, &keyClass, sizeof keyClass}, {CKA_ID, &id, 1}};
  CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
  CK_ULONG count = 0;
  rv = p11.C_FindObjectsInit(session, templ, 2);
  if (rv == CKR_OK) {
    rv = p11.C_FindObjects(session, &key, 1, &count);
    (void)p11.C_FindObjectsFinal(session);
  }
  return count == 1 ? key : CK_INVALID_HANDLE;
}

// Opens a session on `slot`, logs in and starts a SHA256-RSA-PKCS signature with key `id`.
CK_RV prepareSignature(CK_FUNCTION_LIST& p11, CK_SLOT_ID slot, CK_BYTE id, bool login, CK_SESSION_HANDLE& session) {
  CK_RV rv = p11.C_OpenSession(slot, CKF_SERIAL_SESSION, nullptr, nullptr, &session);
  if (rv == CKR_OK && login) {
    rv = loginUser(p11, session);
  }
  if (rv != CKR_OK) {
    return rv;
  }
  const CK_OBJECT_HANDLE key = findPrivateKey(p11, session, id, rv);
  if (rv != CKR_OK || key == CK_INVALID_HANDLE) {
    return rv != CKR_OK ? rv : CKR_KEY_HANDLE_INVALID;
  }
  CK_MECHANISM mechanism{CKM_SHA256_RSA_PKCS, nullptr, 0};
  return p11.C_SignInit(session, &mechanism, key);
}

const std::string kSignedData = "signed on the PIV card, pulled and put back\n";

CK_RV signData(CK_FUNCTION_LIST& p11, CK_SESSION_HANDLE session, std::string* signature = nullptr) {
  std::string data = kSignedData;
  std::vector<CK_BYTE> out(512);
  CK_ULONG length = out.size();
  const CK_RV rv = p11.C_Sign(session, reinterpret_cast<CK_BYTE_PTR>(data.data()), data.size(), out.data(), &length);
  if (rv == CKR_OK && signature != nullptr) {
    signature->assign(reinterpret_cast<const char*>(out.data()), length);
  }
  return rv;
}

// A blocking C_WaitForSlotEvent(0) in its own thread. If it is still blocked when the owner dies
// (a failed test), C_Finalize ends it, as NSS does.
class SlotEventWaiter final {
 public:
  explicit SlotEventWaiter(DojangModule& module) : m_module(module), m_future(m_result.get_future()) {
    m_thread = std::thread([this] {
      CK_SLOT_ID slot = 0;
      const CK_RV rv = m_module->C_WaitForSlotEvent(0, &slot, nullptr);
      m_result.set_value({rv, slot});
    });
  }
  ~SlotEventWaiter() {
    if (m_future.valid() && m_future.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
      (void)m_module.finalize();
    }
    m_thread.join();
  }
  SlotEventWaiter(const SlotEventWaiter&) = delete;
  SlotEventWaiter& operator=(const SlotEventWaiter&) = delete;

  [[nodiscard]] bool blocked(std::chrono::milliseconds look) const {
    return m_future.wait_for(look) == std::future_status::timeout;
  }
  // (CK_RV, slot) once the call returned within `patience`.
  std::optional<std::pair<CK_RV, CK_SLOT_ID>> result(std::chrono::milliseconds patience = kPatience) {
    if (m_future.wait_for(patience) != std::future_status::ready) {
      return std::nullopt;
    }
    return m_future.get();
  }

 private:
  DojangModule& m_module;
  std::promise<std::pair<CK_RV, CK_SLOT_ID>> m_result;
  std::future<std::pair<CK_RV, CK_SLOT_ID>> m_future;
  std::thread m_thread;
};

// CKF_DONT_BLOCK until an event comes (CKR_OK and the slot), or CKR_NO_EVENT at the deadline.
std::pair<CK_RV, CK_SLOT_ID> pollSlotEvent(CK_FUNCTION_LIST& p11) {
  const auto deadline = std::chrono::steady_clock::now() + kPatience;
  while (true) {
    CK_SLOT_ID slot = 0;
    const CK_RV rv = p11.C_WaitForSlotEvent(CKF_DONT_BLOCK, &slot, nullptr);
    if (rv != CKR_NO_EVENT || std::chrono::steady_clock::now() >= deadline) {
      return {rv, slot};
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

// Another client process on the same card: forked before this process loads the module, it
// loads its own, opens a session, logs in and starts a signature; it signs when told to and
// reports each CK_RV through a pipe. No Catch2 in the child: it only reports and _exit()s.
class SecondClient final {
 public:
  SecondClient(CK_SLOT_ID slot, CK_BYTE keyId) {
    int toChild[2];
    int fromChild[2];
    REQUIRE(::pipe2(toChild, O_CLOEXEC) == 0);
    REQUIRE(::pipe2(fromChild, O_CLOEXEC) == 0);
    m_pid = ::fork();
    REQUIRE(m_pid >= 0);
    if (m_pid == 0) {
      ::close(toChild[1]);
      ::close(fromChild[0]);
      runChild(toChild[0], fromChild[1], slot, keyId);
    }
    ::close(toChild[0]);
    ::close(fromChild[1]);
    m_toChild = toChild[1];
    m_fromChild = fromChild[0];
  }
  ~SecondClient() {
    ::close(m_toChild);
    ::close(m_fromChild);
    ::kill(m_pid, SIGKILL);
    ::waitpid(m_pid, nullptr, 0);
  }
  SecondClient(const SecondClient&) = delete;
  SecondClient& operator=(const SecondClient&) = delete;

  // C_Initialize through C_SignInit.
  std::optional<CK_RV> prepared() { return readRv(); }
  std::optional<CK_RV> sign() {
    const char go = 'g';
    if (::write(m_toChild, &go, 1) != 1) {
      return std::nullopt;
    }
    return readRv();
  }

 private:
  [[noreturn]] static void runChild(int commands, int answers, CK_SLOT_ID slot, CK_BYTE keyId) {
    auto answer = [answers](CK_RV rv) {
      const std::uint64_t value = rv;
      return ::write(answers, &value, sizeof value) == static_cast<ssize_t>(sizeof value);
    };
    try {
      DojangModule module;
      CK_RV rv = module.initialize();
      CK_SESSION_HANDLE session = CK_INVALID_HANDLE;
      if (rv == CKR_OK) {
        rv = prepareSignature(module.functions(), slot, keyId, true, session);
      }
      char go = 0;
      if (!answer(rv) || ::read(commands, &go, 1) != 1) {
        ::_exit(1);
      }
      answer(signData(module.functions(), session));
      module.forgetInChild();  // _exit below: the daemon sees the connection close
    } catch (...) {
      answer(CKR_GENERAL_ERROR);
    }
    ::_exit(0);
  }

  std::optional<CK_RV> readRv() {
    pollfd wait{m_fromChild, POLLIN, 0};
    if (::poll(&wait, 1, static_cast<int>(std::chrono::milliseconds(kPatience).count())) != 1) {
      return std::nullopt;
    }
    std::uint64_t value = 0;
    if (::read(m_fromChild, &value, sizeof value) != static_cast<ssize_t>(sizeof value)) {
      return std::nullopt;
    }
    return CK_RV{value};
  }

  pid_t m_pid = -1;
  int m_toChild = -1;
  int m_fromChild = -1;
};

// pcscd with its own reader, the virtual card (out until insert()), and dojangd with the PIV
// driver for that reader (startDaemon(); SoftHSM beside it, as the test daemon always has one).
struct HotplugBench {
  explicit HotplugBench(const std::string& friendlyName = "dojang hotplug test") : pcscd(dir.path(), friendlyName) {}

  void startDaemon(const std::string& moreConfig = {}, const std::string& daemonSettings = {}) {
    const std::string piv = "[piv]\nenabled = true\nreaders = [\"" + pcscd.friendlyName() + "*\"]\n";
    daemon.emplace(softhsm, dojang::test::DojangdOptions{daemonSettings, piv + moreConfig, {}});
    daemon->exportEnv();
  }
  void insert(const std::vector<std::string>& cardOptions = {}) {
    card.start(pcscd.port(), dir / "card.state", cardOptions);
    REQUIRE(card.waitUntilPresent(reader()));
  }
  [[nodiscard]] std::string reader() const { return pcscd.readerName(); }
  [[nodiscard]] std::string path(const std::string& name) const { return (dir / name).string(); }

  CommandResult run(const std::vector<std::string>& argv) const {
    auto env = daemon ? daemon->env() : std::map<std::string, std::string>{};
    env["HOME"] = path("home");
    auto result = dojang::test::runCommand(argv, env);
    std::string line = "$";
    for (const auto& argument : argv) {
      line += " " + argument;
    }
    UNSCOPED_INFO(line << "\nexit " << result.exitCode << "\n" << result.out << result.err);
    return result;
  }
  // pkcs11-tool on the card's slot through `module` (dojang's unless told otherwise).
  CommandResult tool(std::vector<std::string> arguments, const std::string& module = {}) const {
    const std::string chosen = module.empty() ? dojang::test::dojangModulePath() : module;
    std::vector<std::string> argv = {"pkcs11-tool", "--module", chosen};
    if (module.empty()) {
      argv.insert(argv.end(), {"--slot-description", reader()});
    }
    argv.insert(argv.end(), arguments.begin(), arguments.end());
    return run(argv);
  }
  CommandResult userTool(std::vector<std::string> arguments, const std::string& module = {}) const {
    arguments.insert(arguments.begin(), {"--login", "--pin", kPin});
    return tool(std::move(arguments), module);
  }
  // Waits until dojangd shows a token in the reader's slot.
  void waitForToken() const {
    const bool shown = eventually([&] {
      const auto slots = tool({"--list-token-slots"});
      return slots.exitCode == 0 && tokensListedFor(slots.out, reader()) == 1;
    });
    REQUIRE(shown);
  }

  // A key generated on the card through dojang, with a certificate written for it (a PIV card
  // lists a key only through its certificate, so without one the key is unseen after the next
  // insertion); its public key as PEM.
  std::string generate(const std::string& id, const std::string& keyType) const {
    REQUIRE(userTool({"--keypairgen", "--key-type", keyType, "--id", id}).exitCode == 0);
    const std::string der = path("pub-" + id + ".der");
    const std::string pem = path("pub-" + id + ".pem");
    REQUIRE(tool({"--read-object", "--type", "pubkey", "--id", id, "-o", der}).exitCode == 0);
    REQUIRE(run({"openssl", "pkey", "-pubin", "-inform", "DER", "-in", der, "-out", pem}).exitCode == 0);
    certify(id, pem);
    return pem;
  }
  // A self-signed-by-CA certificate for card key `id`, written to the card through dojang.
  void certify(const std::string& id, const std::string& publicKey) const {
    if (!std::filesystem::exists(path("ca.key"))) {
      REQUIRE(run({"openssl", "req", "-new", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                   "-nodes", "-keyout", path("ca.key"), "-subj", "/CN=hotplug test CA", "-days", "30", "-out",
                   path("ca.pem")}).exitCode == 0);
    }
    REQUIRE(run({"openssl", "req", "-new", "-key", path("ca.key"), "-subj", "/CN=card key " + id, "-out",
                 path("req-" + id)}).exitCode == 0);
    REQUIRE(run({"openssl", "x509", "-req", "-in", path("req-" + id), "-CA", path("ca.pem"), "-CAkey", path("ca.key"),
                 "-CAcreateserial", "-force_pubkey", publicKey, "-days", "30", "-outform", "DER", "-out",
                 path("cert-" + id + ".der")}).exitCode == 0);
    REQUIRE(userTool({"--write-object", path("cert-" + id + ".der"), "--type", "cert", "--id", id}).exitCode == 0);
  }
  // openssl's verdict on a signature of kSignedData (written to a file first).
  bool verifies(const std::string& publicKey, const std::string& signature, const std::vector<std::string>& options = {}) {
    dojang::test::writeFile(path("data"), kSignedData);
    dojang::test::writeFile(path("sig"), signature);
    std::vector<std::string> argv = {"openssl", "dgst", "-sha256", "-verify", publicKey, "-signature", path("sig")};
    argv.insert(argv.end(), options.begin(), options.end());
    argv.push_back(path("data"));
    return run(argv).exitCode == 0;
  }

  dojang::test::PcscdLock lock;  // first: pcscd is machine-wide
  dojang::test::TempDir dir{"dojang-hotplug-"};
  dojang::test::PcscdProcess pcscd;
  dojang::test::VirtualPivCard card{dir.path()};
  dojang::test::SoftHsmToken softhsm;
  std::optional<dojang::test::DojangdProcess> daemon;
  // DOJANG_TEST_DAEMON_LOG=1: dojangd's log on stderr at the end of each test, to read a failure.
  ~HotplugBench() {
    if (daemon && std::getenv("DOJANG_TEST_DAEMON_LOG") != nullptr) {
      std::fprintf(stderr, "%s\n", daemon->log().c_str());
    }
  }
};

}  // namespace

TEST_CASE("hotplug: C_WaitForSlotEvent and NSS-style polling follow the card; the slot and its token stay the same",
          "[piv][integration][hotplug]") {
  HotplugBench bench;
  bench.startDaemon();
  DojangModule module;
  auto& p11 = module.functions();
  REQUIRE(module.initialize() == CKR_OK);

  // An empty reader is a slot already: removable, no token, and nothing happened yet.
  const auto found = readerSlot(p11, bench.reader());
  REQUIRE(found);
  const CK_SLOT_ID slot = *found;
  const std::size_t slotCount = slotList(p11, false).size();
  CHECK((slotInfo(p11, slot).flags & CKF_REMOVABLE_DEVICE) != 0);
  CHECK_FALSE(tokenPresent(p11, slot));
  CK_SLOT_ID none = 0;
  CHECK(ckRvName(p11.C_WaitForSlotEvent(CKF_DONT_BLOCK, &none, nullptr)) == ckRvName(CKR_NO_EVENT));

  // Insertion wakes a blocked waiter with the slot.
  std::string serial;
  {
    SlotEventWaiter waiter(module);
    CHECK(waiter.blocked(std::chrono::milliseconds(300)));
    bench.insert();
    const auto event = waiter.result();
    REQUIRE(event);
    CHECK(ckRvName(event->first) == ckRvName(CKR_OK));
    CHECK(event->second == slot);
  }
  CHECK(tokenPresent(p11, slot));
  serial = tokenSerial(p11, slot);
  CHECK_FALSE(serial.empty());
  const auto present = slotList(p11, true);
  CHECK(std::find(present.begin(), present.end(), slot) != present.end());
  CHECK(ckRvName(p11.C_WaitForSlotEvent(CKF_DONT_BLOCK, &none, nullptr)) == ckRvName(CKR_NO_EVENT));

  // Removal wakes it too; the slot stays in the list, without its token.
  {
    SlotEventWaiter waiter(module);
    CHECK(waiter.blocked(std::chrono::milliseconds(300)));
    bench.card.stop();
    const auto event = waiter.result();
    REQUIRE(event);
    CHECK(ckRvName(event->first) == ckRvName(CKR_OK));
    CHECK(event->second == slot);
  }
  CHECK_FALSE(tokenPresent(p11, slot));
  CHECK((slotInfo(p11, slot).flags & CKF_REMOVABLE_DEVICE) != 0);
  CHECK(slotList(p11, false).size() == slotCount);
  const auto afterRemoval = slotList(p11, true);
  CHECK(std::find(afterRemoval.begin(), afterRemoval.end(), slot) == afterRemoval.end());
  CK_TOKEN_INFO gone{};
  CHECK(ckRvName(p11.C_GetTokenInfo(slot, &gone)) == ckRvName(CKR_TOKEN_NOT_PRESENT));
  CHECK(ckRvName(p11.C_WaitForSlotEvent(CKF_DONT_BLOCK, &none, nullptr)) == ckRvName(CKR_NO_EVENT));

  // Re-insertion seen by CKF_DONT_BLOCK polling: the same slot ID, the same token.
  bench.insert();
  const auto [rv, inserted] = pollSlotEvent(p11);
  CHECK(ckRvName(rv) == ckRvName(CKR_OK));
  CHECK(inserted == slot);
  CHECK(tokenPresent(p11, slot));
  CHECK(tokenSerial(p11, slot) == serial);
  CHECK(readerSlot(p11, bench.reader()) == slot);

  // NSS polls C_GetSlotInfo about once a second: CKF_TOKEN_PRESENT goes as the card goes, and
  // the event is still there for a later C_WaitForSlotEvent.
  bench.card.stop();
  CHECK(eventually([&] { return !tokenPresent(p11, slot); }));
  CHECK(slotList(p11, false).size() == slotCount);
  CK_SLOT_ID removed = 0;
  CHECK(ckRvName(p11.C_WaitForSlotEvent(CKF_DONT_BLOCK, &removed, nullptr)) == ckRvName(CKR_OK));
  CHECK(removed == slot);
  bench.insert();
  CHECK(eventually([&] { return tokenPresent(p11, slot); }));
  CHECK(tokenSerial(p11, slot) == serial);
  CHECK(slotList(p11, false).size() == slotCount);
  REQUIRE(module.finalize() == CKR_OK);
  CHECK(bench.daemon->stop() == 0);
  // CKR_NO_EVENT is an everyday answer: a client polling once a second must not fill the log.
  CHECK_FALSE(contains(bench.daemon->log(), "warning: WaitForSlotEvent"));
}

namespace {

// ECDSA over kSignedData with card key `id` through dojang, checked by openssl.
bool ecSignatureVerifies(HotplugBench& bench, const std::string& id, const std::string& publicKey) {
  dojang::test::writeFile(bench.path("data"), kSignedData);
  const auto signed_ = bench.userTool({"--sign", "--mechanism", "ECDSA-SHA256", "--id", id, "-i", bench.path("data"),
                                      "-o", bench.path("sig-ec"), "--signature-format", "openssl"});
  return signed_.exitCode == 0 &&
         bench.run({"openssl", "dgst", "-sha256", "-verify", publicKey, "-signature", bench.path("sig-ec"),
                    bench.path("data")}).exitCode == 0;
}

}  // namespace

TEST_CASE("pcscd restarted under a running dojangd: the card comes back, with no dojangd restart",
          "[piv][integration][hotplug][pcscd]") {
  HotplugBench bench;
  bench.startDaemon();
  const pid_t daemonPid = bench.daemon->pid();
  DojangModule module;
  auto& p11 = module.functions();
  REQUIRE(module.initialize() == CKR_OK);
  const auto slot = readerSlot(p11, bench.reader());
  REQUIRE(slot);
  bench.insert();
  REQUIRE(eventually([&] { return tokenPresent(p11, *slot); }));
  const std::string publicKey = bench.generate("01", "EC:prime256v1");
  const std::size_t slotCount = slotList(p11, false).size();

  SECTION("the card left in its reader: it reconnects to the new vpcd by itself") {
    {
      SlotEventWaiter waiter(module);
      bench.pcscd.restart();
      const auto event = waiter.result();  // the card went with the old pcscd
      REQUIRE(event);
      CHECK(event->second == *slot);
    }
    REQUIRE(bench.card.waitUntilPresent(bench.reader()));
  }
  SECTION("the card pulled, pcscd restarted, the card inserted again") {
    bench.card.stop();
    REQUIRE(eventually([&] { return !tokenPresent(p11, *slot); }));
    bench.pcscd.restart();
    bench.insert();
  }
  CHECK(eventually([&] { return tokenPresent(p11, *slot); }));
  CHECK(readerSlot(p11, bench.reader()) == slot);
  CHECK(slotList(p11, false).size() == slotCount);
  CHECK(ecSignatureVerifies(bench, "01", publicKey));
  CHECK(bench.daemon->pid() == daemonPid);
  CHECK(dojang::test::processAlive(daemonPid));
  REQUIRE(module.finalize() == CKR_OK);
  CHECK(bench.daemon->stop() == 0);
}

TEST_CASE("pcscd started after dojangd: its reader and the next insertion are seen, the card signs",
          "[piv][integration][hotplug][pcscd]") {
  HotplugBench bench;
  bench.pcscd.stop();
  bench.startDaemon();
  DojangModule module;
  auto& p11 = module.functions();
  REQUIRE(module.initialize() == CKR_OK);
  CHECK_FALSE(readerSlot(p11, bench.reader()));
  const std::size_t slotsWithoutPcscd = slotList(p11, false).size();

  bench.pcscd.start();
  {
    SlotEventWaiter waiter(module);
    bench.insert();
    const auto event = waiter.result();
    REQUIRE(event);
    CHECK(ckRvName(event->first) == ckRvName(CKR_OK));
    CHECK(readerSlot(p11, bench.reader()) == event->second);
  }
  const auto slot = readerSlot(p11, bench.reader());
  REQUIRE(slot);
  CHECK(tokenPresent(p11, *slot));
  CHECK(slotList(p11, false).size() > slotsWithoutPcscd);
  const std::string publicKey = bench.generate("01", "EC:prime256v1");
  CHECK(ecSignatureVerifies(bench, "01", publicKey));
  REQUIRE(module.finalize() == CKR_OK);
  CHECK(bench.daemon->stop() == 0);
}

TEST_CASE("a card pulled mid-signature ends every session on it, dojangd stays, the same client signs after re-insertion",
          "[piv][integration][hotplug][pulled]") {
  HotplugBench bench;
  bench.startDaemon();
  // The card leaves at the first APDU of a signature with 9D (GENERAL AUTHENTICATE, INS 87),
  // without answering it: pulled in the middle of the exchange.
  bench.insert({"--exit-on-ins", "87:9d"});
  bench.waitForToken();
  const std::string publicKey = bench.generate("03", "rsa:2048");
  constexpr CK_BYTE kKeyId = 0x03;

  std::optional<CK_SLOT_ID> slot;
  {
    DojangModule probe;  // the slot ID for the second client, which must fork before this process loads the module
    REQUIRE(probe.initialize() == CKR_OK);
    slot = readerSlot(probe.functions(), bench.reader());
    REQUIRE(probe.finalize() == CKR_OK);
  }
  REQUIRE(slot);
  SecondClient other(*slot, kKeyId);
  const auto otherPrepared = other.prepared();
  REQUIRE(otherPrepared);
  REQUIRE(ckRvName(*otherPrepared) == ckRvName(CKR_OK));

  DojangModule module;
  auto& p11 = module.functions();
  REQUIRE(module.initialize() == CKR_OK);
  CK_SESSION_HANDLE first = CK_INVALID_HANDLE;
  CK_SESSION_HANDLE second = CK_INVALID_HANDLE;
  REQUIRE(ckRvName(prepareSignature(p11, *slot, kKeyId, true, first)) == ckRvName(CKR_OK));
  REQUIRE(ckRvName(prepareSignature(p11, *slot, kKeyId, false, second)) == ckRvName(CKR_OK));

  const CK_RV pulled = signData(p11, first);
  INFO("C_Sign as the card left: " << ckRvName(pulled));
  CHECK(removedRv(pulled));
  CHECK(eventually([&] { return !bench.card.running(); }));  // it left at that APDU
  const CK_RV secondRv = signData(p11, second);
  INFO("C_Sign on the other session: " << ckRvName(secondRv));
  CHECK(removedRv(secondRv));
  const auto otherRv = other.sign();
  REQUIRE(otherRv);
  INFO("C_Sign in the other client: " << ckRvName(*otherRv));
  CHECK(removedRv(*otherRv));
  CK_SESSION_INFO info{};
  CHECK(removedRv(p11.C_GetSessionInfo(first, &info)));
  CHECK(eventually([&] { return !tokenPresent(p11, *slot); }));

  // dojangd is still there and answers.
  CHECK(dojang::test::processAlive(bench.daemon->pid()));
  if (const char* cli = std::getenv("DOJANG_CLI")) {
    CHECK(bench.run({cli, "status"}).exitCode == 0);
  }

  // Back in: the same client, without C_Finalize, opens a new session, logs in and signs.
  const auto resign = [&](CK_SESSION_HANDLE& session) {
    REQUIRE(eventually([&] { return tokenPresent(p11, *slot); }));
    REQUIRE(ckRvName(prepareSignature(p11, *slot, kKeyId, true, session)) == ckRvName(CKR_OK));
  };
  bench.insert();
  CK_SESSION_HANDLE again = CK_INVALID_HANDLE;
  resign(again);
  std::string signature;
  REQUIRE(ckRvName(signData(p11, again, &signature)) == ckRvName(CKR_OK));
  CHECK(bench.verifies(publicKey, signature));

  // Pulled between C_SignInit and C_Sign (a clean removal this time), then back again.
  CK_MECHANISM mechanism{CKM_SHA256_RSA_PKCS, nullptr, 0};
  CK_RV found = CKR_OK;
  const CK_OBJECT_HANDLE key = findPrivateKey(p11, again, kKeyId, found);
  REQUIRE(p11.C_SignInit(again, &mechanism, key) == CKR_OK);
  bench.card.stop();
  CHECK(eventually([&] { return !tokenPresent(p11, *slot); }));
  const CK_RV afterStop = signData(p11, again);
  INFO("C_Sign after the card was stopped: " << ckRvName(afterStop));
  CHECK(removedRv(afterStop));
  bench.insert();
  CK_SESSION_HANDLE last = CK_INVALID_HANDLE;
  resign(last);
  REQUIRE(ckRvName(signData(p11, last, &signature)) == ckRvName(CKR_OK));
  CHECK(bench.verifies(publicKey, signature));
  CHECK(p11.C_CloseSession(last) == CKR_OK);
  REQUIRE(module.finalize() == CKR_OK);
  CHECK(bench.daemon->stop() == 0);
}

namespace {

// What dojang wrote, read without dojang: `module` (OpenSC or ykcs11, loaded directly by
// pkcs11-tool) lists the certificates of card keys 01 (9A, EC) and 02 (9C, RSA), returns them
// byte for byte, and signs with both keys; openssl verifies each signature against that
// certificate. (Not 9D: OpenSC gives the key management key no signing use.)
void crossCheck(HotplugBench& bench, const std::string& module) {
  const auto objects = bench.tool({"--list-objects", "--type", "cert"}, module);
  REQUIRE(objects.exitCode == 0);
  CHECK(contains(objects.out, "CN=card key 01"));
  CHECK(contains(objects.out, "CN=card key 02"));
  dojang::test::writeFile(bench.path("data"), kSignedData);
  REQUIRE(bench.run({"openssl", "dgst", "-sha256", "-binary", "-out", bench.path("data.sha256"), bench.path("data")})
              .exitCode == 0);
  for (const std::string id : {"01", "02"}) {
    const std::string read = bench.path("read-" + id + ".der");
    REQUIRE(bench.tool({"--read-object", "--type", "cert", "--id", id, "-o", read}, module).exitCode == 0);
    CHECK(dojang::test::readFile(read) == dojang::test::readFile(bench.path("cert-" + id + ".der")));
    const std::string certificateKey = bench.path("certkey-" + id + ".pem");
    REQUIRE(bench.run({"openssl", "x509", "-inform", "DER", "-in", read, "-pubkey", "-noout", "-out", certificateKey})
                .exitCode == 0);
    const std::string signature = bench.path("third-party-sig-" + id);
    const bool ec = id == "01";
    std::vector<std::string> sign = {"--sign", "--id", id, "-o", signature, "--mechanism",
                                     ec ? "ECDSA" : "SHA256-RSA-PKCS"};
    if (ec) {
      sign.insert(sign.end(), {"-i", bench.path("data.sha256"), "--signature-format", "openssl"});
    } else {
      sign.insert(sign.end(), {"-i", bench.path("data")});
    }
    REQUIRE(bench.userTool(sign, module).exitCode == 0);
    CHECK(bench.run({"openssl", "dgst", "-sha256", "-verify", certificateKey, "-signature", signature,
                     bench.path("data")}).exitCode == 0);
  }
}

}  // namespace

TEST_CASE("keys and certificates made by dojang's PIV driver are OpenSC's too: it reads them and signs",
          "[piv][integration][third-party]") {
  HotplugBench bench;
  bench.startDaemon();
  bench.insert();
  bench.waitForToken();
  (void)bench.generate("01", "EC:prime256v1");
  (void)bench.generate("02", "rsa:2048");
  REQUIRE(bench.daemon->stop() == 0);  // nothing of dojang between OpenSC and the card now
  crossCheck(bench, kOpenscModule);
}

TEST_CASE("a YubiKey-like card provisioned through dojang works with ykcs11", "[piv][integration][third-party]") {
  HotplugBench bench("Yubico YubiKey OTP+FIDO+CCID");  // ykcs11 serves only readers named so
  bench.startDaemon();
  bench.insert({"--yubikey-version", "5.4.3", "--serial", "12345678"});
  bench.waitForToken();
  CHECK(contains(bench.tool({"--list-token-slots"}).out, "12345678"));
  (void)bench.generate("01", "EC:prime256v1");
  (void)bench.generate("02", "rsa:2048");
  REQUIRE(bench.daemon->stop() == 0);
  crossCheck(bench, kYkcs11Module);
}

TEST_CASE("one card, one slot: beside the OpenSC backend, dojangd shows the card once, through the PIV driver",
          "[piv][integration][dedupe]") {
  HotplugBench bench;
  bench.startDaemon(std::string("[[backend]]\nname = \"opensc\"\nmodule = \"") + kOpenscModule + "\"\n",
                    "poll_interval_ms = 100");
  const auto shownOnce = [&] {
    bench.waitForToken();
    // The vendor module is polled: give it a few rounds to show the card if it were going to.
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    const auto listing = bench.tool({"--list-slots"});
    REQUIRE(listing.exitCode == 0);
    CHECK(tokensListedFor(listing.out, bench.reader()) == 1);
    CHECK_FALSE(contains(listing.out, "PKCS#15 emulated"));  // OpenSC's token model
    CHECK(contains(listing.out, "token model        : PIV"));

    DojangModule module;
    REQUIRE(module.initialize() == CKR_OK);
    auto& p11 = module.functions();
    int withCard = 0;
    for (const CK_SLOT_ID slot : slotList(p11, true)) {
      const auto info = slotInfo(p11, slot);
      if (trimmed(info.slotDescription, sizeof info.slotDescription) == bench.reader()) {
        ++withCard;
        CHECK(trimmed(info.manufacturerID, sizeof info.manufacturerID) == "PC/SC");  // the PIV driver's
      }
    }
    CHECK(withCard == 1);
    int slotsForReader = 0;  // an empty one left behind by the vendor module counts too
    for (const CK_SLOT_ID slot : slotList(p11, false)) {
      const auto info = slotInfo(p11, slot);
      slotsForReader += trimmed(info.slotDescription, sizeof info.slotDescription) == bench.reader() ? 1 : 0;
    }
    CHECK(slotsForReader == 1);
    REQUIRE(module.finalize() == CKR_OK);
  };
  // Inserted while dojangd runs, there already when dojangd starts, and coming with a pcscd
  // started after dojangd (as a reader with its card does when a YubiKey is plugged in).
  bench.insert();
  shownOnce();
  REQUIRE(bench.daemon->stop() == 0);
  bench.daemon->restart();
  shownOnce();
  REQUIRE(bench.daemon->stop() == 0);
  bench.pcscd.stop();
  bench.daemon->restart();
  bench.pcscd.start();
  REQUIRE(bench.card.waitUntilPresent(bench.reader()));
  shownOnce();
  CHECK(bench.daemon->stop() == 0);
}
