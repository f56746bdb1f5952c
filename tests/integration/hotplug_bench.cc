#include "tests/integration/hotplug_bench.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "tests/support/raw_wire.h"

namespace dojang::test::hotplug {

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

bool removedRv(CK_RV rv) { return rv == CKR_DEVICE_REMOVED || rv == CKR_SESSION_HANDLE_INVALID; }

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

CK_RV prepareSignature(CK_FUNCTION_LIST& p11, CK_SLOT_ID slot, CK_BYTE id, bool login, CK_SESSION_HANDLE& session,
                       CK_MECHANISM_TYPE mechanism) {
  CK_RV rv = p11.C_OpenSession(slot, CKF_SERIAL_SESSION, nullptr, nullptr, &session);
  if (rv == CKR_OK && login) {
    std::string pin = kPin;
    rv = p11.C_Login(session, CKU_USER, reinterpret_cast<CK_UTF8CHAR_PTR>(pin.data()), pin.size());
  }
  if (rv != CKR_OK) {
    return rv;
  }
  const CK_OBJECT_HANDLE key = findPrivateKey(p11, session, id, rv);
  if (rv != CKR_OK || key == CK_INVALID_HANDLE) {
    return rv != CKR_OK ? rv : CKR_KEY_HANDLE_INVALID;
  }
  CK_MECHANISM chosen{mechanism, nullptr, 0};
  return p11.C_SignInit(session, &chosen, key);
}

CK_RV signData(CK_FUNCTION_LIST& p11, CK_SESSION_HANDLE session, std::string* signature) {
  std::string data = kSignedData;
  std::vector<CK_BYTE> out(512);
  CK_ULONG length = out.size();
  const CK_RV rv = p11.C_Sign(session, reinterpret_cast<CK_BYTE_PTR>(data.data()), data.size(), out.data(), &length);
  if (rv == CKR_OK && signature != nullptr) {
    signature->assign(reinterpret_cast<const char*>(out.data()), length);
  }
  return rv;
}

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

// ---- SlotEventWaiter ----

SlotEventWaiter::SlotEventWaiter(DojangModule& module) : m_module(module), m_future(m_result.get_future()) {
  m_thread = std::thread([this] {
    CK_SLOT_ID slot = 0;
    const CK_RV rv = m_module->C_WaitForSlotEvent(0, &slot, nullptr);
    m_result.set_value({rv, slot});
  });
}

SlotEventWaiter::~SlotEventWaiter() {
  if (m_future.valid() && m_future.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
    (void)m_module.finalize();
  }
  m_thread.join();
}

bool SlotEventWaiter::blocked(std::chrono::milliseconds look) const {
  return m_future.wait_for(look) == std::future_status::timeout;
}

std::optional<std::pair<CK_RV, CK_SLOT_ID>> SlotEventWaiter::result(std::chrono::milliseconds patience) {
  if (m_future.wait_for(patience) != std::future_status::ready) {
    return std::nullopt;
  }
  return m_future.get();
}

// ---- SecondClient ----

SecondClient::SecondClient(CK_SLOT_ID slot, CK_BYTE keyId) {
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

SecondClient::~SecondClient() {
  ::close(m_toChild);
  ::close(m_fromChild);
  ::kill(m_pid, SIGKILL);
  ::waitpid(m_pid, nullptr, 0);
}

std::optional<CK_RV> SecondClient::prepared() { return readRv(); }

std::optional<CK_RV> SecondClient::sign() {
  const char go = 'g';
  if (::write(m_toChild, &go, 1) != 1) {
    return std::nullopt;
  }
  return readRv();
}

void SecondClient::runChild(int commands, int answers, CK_SLOT_ID slot, CK_BYTE keyId) {
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

std::optional<CK_RV> SecondClient::readRv() {
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

// ---- HotplugBench ----

HotplugBench::HotplugBench(const std::string& friendlyName) : pcscd(dir.path(), friendlyName) {}

HotplugBench::~HotplugBench() {
  if (daemon && std::getenv("DOJANG_TEST_DAEMON_LOG") != nullptr) {
    std::fprintf(stderr, "%s\n", daemon->log().c_str());
  }
}

void HotplugBench::startDaemon(const std::string& moreConfig, const std::string& daemonSettings) {
  const std::string piv = "[piv]\nenabled = true\nreaders = [\"" + pcscd.friendlyName() + "*\"]\n";
  daemon.emplace(softhsm, DojangdOptions{daemonSettings, piv + moreConfig, {}});
  daemon->exportEnv();
}

void HotplugBench::insert(const std::vector<std::string>& cardOptions) {
  card.start(pcscd.port(), dir / "card.state", cardOptions);
  REQUIRE(card.waitUntilPresent(reader()));
}

CommandResult HotplugBench::run(const std::vector<std::string>& argv) const {
  auto env = daemon ? daemon->env() : std::map<std::string, std::string>{};
  env["HOME"] = path("home");
  auto result = runCommand(argv, env);
  std::string line = "$";
  for (const auto& argument : argv) {
    line += " " + argument;
  }
  UNSCOPED_INFO(line << "\nexit " << result.exitCode << "\n" << result.out << result.err);
  return result;
}

CommandResult HotplugBench::tool(std::vector<std::string> arguments, const std::string& module) const {
  const std::string chosen = module.empty() ? dojangModulePath() : module;
  std::vector<std::string> argv = {"pkcs11-tool", "--module", chosen};
  if (module.empty()) {
    argv.insert(argv.end(), {"--slot-description", reader()});
  }
  argv.insert(argv.end(), arguments.begin(), arguments.end());
  return run(argv);
}

CommandResult HotplugBench::userTool(std::vector<std::string> arguments, const std::string& module) const {
  arguments.insert(arguments.begin(), {"--login", "--pin", kPin});
  return tool(std::move(arguments), module);
}

void HotplugBench::waitForToken() const {
  const bool shown = eventually([&] {
    const auto slots = tool({"--list-token-slots"});
    return slots.exitCode == 0 && tokensListedFor(slots.out, reader()) == 1;
  });
  REQUIRE(shown);
}

std::string HotplugBench::generate(const std::string& id, const std::string& keyType) const {
  REQUIRE(userTool({"--keypairgen", "--key-type", keyType, "--id", id}).exitCode == 0);
  const std::string der = path("pub-" + id + ".der");
  const std::string pem = path("pub-" + id + ".pem");
  REQUIRE(tool({"--read-object", "--type", "pubkey", "--id", id, "-o", der}).exitCode == 0);
  REQUIRE(run({"openssl", "pkey", "-pubin", "-inform", "DER", "-in", der, "-out", pem}).exitCode == 0);
  certify(id, pem);
  return pem;
}

void HotplugBench::certify(const std::string& id, const std::string& publicKey) const {
  if (!std::filesystem::exists(path("ca.key"))) {
    REQUIRE(run({"openssl", "req", "-new", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", path("ca.key"), "-subj", "/CN=hotplug test CA", "-days", "30", "-out", path("ca.pem")})
                .exitCode == 0);
  }
  REQUIRE(run({"openssl", "req", "-new", "-key", path("ca.key"), "-subj", "/CN=card key " + id, "-out",
               path("req-" + id)}).exitCode == 0);
  REQUIRE(run({"openssl", "x509", "-req", "-in", path("req-" + id), "-CA", path("ca.pem"), "-CAkey", path("ca.key"),
               "-CAcreateserial", "-force_pubkey", publicKey, "-days", "30", "-outform", "DER", "-out",
               path("cert-" + id + ".der")}).exitCode == 0);
  REQUIRE(userTool({"--write-object", path("cert-" + id + ".der"), "--type", "cert", "--id", id}).exitCode == 0);
}

bool HotplugBench::verifies(const std::string& publicKey, const std::string& signature) const {
  writeFile(path("data"), kSignedData);
  writeFile(path("sig"), signature);
  return run({"openssl", "dgst", "-sha256", "-verify", publicKey, "-signature", path("sig"), path("data")}).exitCode ==
         0;
}

}  // namespace dojang::test::hotplug
