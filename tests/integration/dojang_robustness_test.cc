// dojangd and dojang-pkcs11.so when things go wrong: the daemon killed under a logged-in client,
// hostile bytes on its socket, fork, C_Finalize during a blocking wait, autostart, SIGTERM.
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "src/common/cryptoki/cryptoki.h"
#include "src/common/errors/error.h"
#include "src/common/wire/codec.h"
#include "tests/support/dojangd_process.h"
#include "tests/support/raw_wire.h"
#include "tests/support/run_command.h"
#include "tests/support/softhsm_token.h"
#include "tests/support/temp_dir.h"

namespace {

using dojang::ckRvName;
using dojang::test::DojangdProcess;
using dojang::test::dojangdConfigFor;
using dojang::test::DojangModule;
using dojang::test::eventually;
using dojang::test::processAlive;
using dojang::test::RawConnection;
using dojang::test::dojangModulePath;
using dojang::test::readFile;
using dojang::test::runCommand;
using dojang::test::slotWithLabel;
using dojang::test::SoftHsmToken;
using dojang::test::TempDir;
using dojang::test::writeFile;
namespace wire = dojang::wire;

constexpr const char* kTokenLabel = "dojang-robustness";
constexpr const char* kPin = "1234";
constexpr std::array<CK_BYTE, 10> kP256Params = {0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07};

CK_RV login(CK_FUNCTION_LIST& p11, CK_SESSION_HANDLE session) {
  std::string pin = kPin;
  return p11.C_Login(session, CKU_USER, reinterpret_cast<CK_UTF8CHAR_PTR>(pin.data()), pin.size());
}

CK_OBJECT_HANDLE findPrivateKey(CK_FUNCTION_LIST& p11, CK_SESSION_HANDLE session) {
  CK_OBJECT_CLASS keyClass = CKO_PRIVATE_KEY;
  CK_ATTRIBUTE templ[] = {{CKA_CLASS, &keyClass, sizeof keyClass}};
  REQUIRE(p11.C_FindObjectsInit(session, templ, 1) == CKR_OK);
  CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
  CK_ULONG count = 0;
  REQUIRE(p11.C_FindObjects(session, &key, 1, &count) == CKR_OK);
  REQUIRE(p11.C_FindObjectsFinal(session) == CKR_OK);
  REQUIRE(count == 1);
  return key;
}

CK_OBJECT_HANDLE generateEcKey(CK_FUNCTION_LIST& p11, CK_SESSION_HANDLE session) {
  CK_BBOOL yes = CK_TRUE;
  auto params = kP256Params;
  CK_MECHANISM mechanism{CKM_EC_KEY_PAIR_GEN, nullptr, 0};
  CK_ATTRIBUTE publicTemplate[] = {{CKA_TOKEN, &yes, sizeof yes}, {CKA_EC_PARAMS, params.data(), params.size()}};
  CK_ATTRIBUTE privateTemplate[] = {{CKA_TOKEN, &yes, sizeof yes}, {CKA_SIGN, &yes, sizeof yes}};
  CK_OBJECT_HANDLE publicKey = CK_INVALID_HANDLE;
  CK_OBJECT_HANDLE privateKey = CK_INVALID_HANDLE;
  REQUIRE(p11.C_GenerateKeyPair(session, &mechanism, publicTemplate, 2, privateTemplate, 2, &publicKey,
                                &privateKey) == CKR_OK);
  return privateKey;
}

CK_RV signOnce(CK_FUNCTION_LIST& p11, CK_SESSION_HANDLE session, CK_OBJECT_HANDLE key) {
  CK_MECHANISM ecdsa{CKM_ECDSA, nullptr, 0};
  std::array<CK_BYTE, 32> hash{};
  hash.fill(0x42);
  std::array<CK_BYTE, 128> signature{};
  CK_ULONG length = signature.size();
  if (const CK_RV rv = p11.C_SignInit(session, &ecdsa, key); rv != CKR_OK) {
    return rv;
  }
  return p11.C_Sign(session, hash.data(), hash.size(), signature.data(), &length);
}

// A token, a daemon serving it, and the module in this process pointed at it (not initialised).
struct Fixture {
  SoftHsmToken token{{kTokenLabel, kPin, "12345678"}};
  DojangdProcess daemon{token};
  DojangModule module;

  Fixture() { daemon.exportEnv(); }
  [[nodiscard]] CK_FUNCTION_LIST& p11() const { return module.functions(); }
};

// ---- Raw wire access: frames built by hand (and with the real encoder for the valid parts) ----

wire::Bytes withLength(wire::Bytes payload) {
  wire::Bytes frame;
  const auto size = static_cast<std::uint32_t>(payload.size());
  for (int i = 0; i < 4; ++i) {
    frame.push_back(static_cast<std::uint8_t>(size >> (8 * i)));
  }
  frame.insert(frame.end(), payload.begin(), payload.end());
  return frame;
}

wire::Bytes helloFrame(std::uint32_t version = wire::kProtocolVersion) {
  return dojang::test::helloFrame("dojang_robustness_test raw", version);
}

// A payload: u16 call id, then raw field bytes.
wire::Bytes request(std::uint16_t id, const wire::Bytes& fields = {}) {
  wire::Bytes payload = {static_cast<std::uint8_t>(id), static_cast<std::uint8_t>(id >> 8)};
  payload.insert(payload.end(), fields.begin(), fields.end());
  return withLength(payload);
}

void put(wire::Bytes& out, std::uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) {
    out.push_back(static_cast<std::uint8_t>(value >> (8 * i)));
  }
}

}  // namespace

TEST_CASE("a client survives dojangd being killed and restarted under its login", "[integration][robustness]") {
  Fixture fixture;
  auto& p11 = fixture.p11();
  REQUIRE(fixture.module.initialize() == CKR_OK);
  const CK_SLOT_ID slot = slotWithLabel(p11, kTokenLabel);
  CK_SESSION_HANDLE session = CK_INVALID_HANDLE;
  REQUIRE(p11.C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &session) == CKR_OK);
  CK_SESSION_HANDLE readOnly = CK_INVALID_HANDLE;
  REQUIRE(p11.C_OpenSession(slot, CKF_SERIAL_SESSION, nullptr, nullptr, &readOnly) == CKR_OK);
  REQUIRE(login(p11, session) == CKR_OK);
  const CK_OBJECT_HANDLE key = generateEcKey(p11, session);
  REQUIRE(signOnce(p11, session, key) == CKR_OK);
  const pid_t firstPid = fixture.daemon.pid();

  fixture.daemon.kill9();
  fixture.daemon.restart();
  REQUIRE(fixture.daemon.pid() != firstPid);

  INFO("dojangd log:\n" << fixture.daemon.log());
  // The old sessions belonged to the dead daemon.
  CK_SESSION_INFO info{};
  CHECK(ckRvName(p11.C_GetSessionInfo(session, &info)) == ckRvName(CKR_SESSION_HANDLE_INVALID));
  CHECK(ckRvName(signOnce(p11, session, key)) == ckRvName(CKR_SESSION_HANDLE_INVALID));
  CHECK(ckRvName(p11.C_GetSessionInfo(readOnly, &info)) == ckRvName(CKR_SESSION_HANDLE_INVALID));

  // Same process, no C_Finalize/C_Initialize: a new session and login, and it signs again.
  CK_ULONG count = 0;
  REQUIRE(p11.C_GetSlotList(CK_TRUE, nullptr, &count) == CKR_OK);
  const CK_SLOT_ID slotAgain = slotWithLabel(p11, kTokenLabel);
  CHECK(slotAgain == slot);
  CK_SESSION_HANDLE fresh = CK_INVALID_HANDLE;
  REQUIRE(p11.C_OpenSession(slotAgain, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &fresh) == CKR_OK);
  REQUIRE(ckRvName(login(p11, fresh)) == ckRvName(CKR_OK));
  const CK_OBJECT_HANDLE keyAgain = findPrivateKey(p11, fresh);
  CHECK(ckRvName(signOnce(p11, fresh, keyAgain)) == ckRvName(CKR_OK));

  REQUIRE(fixture.module.finalize() == CKR_OK);
  CHECK(fixture.daemon.stop() == 0);
}

TEST_CASE("dojangd survives random, truncated and oversized frames", "[integration][robustness]") {
  SoftHsmToken token{{kTokenLabel, kPin, "12345678"}};
  DojangdProcess daemon(token);
  const pid_t pid = daemon.pid();
  const auto socket = daemon.socketPath();

  SECTION("a length of 0xFFFFFFFF closes the connection") {
    RawConnection raw(socket);
    REQUIRE(raw.send(wire::Bytes{0xFF, 0xFF, 0xFF, 0xFF}));
    CHECK(raw.closedByPeer());
  }
  SECTION("a length just over the limit closes the connection, before or after Hello") {
    RawConnection before(socket);
    wire::Bytes tooLong;
    put(tooLong, wire::kMaxFrameBytes + 1, 4);
    REQUIRE(before.send(tooLong));
    CHECK(before.closedByPeer());
    RawConnection after(socket);
    REQUIRE(after.call(helloFrame()) == CKR_OK);
    REQUIRE(after.send(tooLong));
    CHECK(after.closedByPeer());
  }
  SECTION("a length of 100 followed by 10 bytes and a close") {
    {
      RawConnection raw(socket);
      wire::Bytes partial;
      put(partial, 100, 4);
      partial.resize(partial.size() + 10, 0xAB);
      REQUIRE(raw.send(partial));
    }
    {
      RawConnection raw(socket);
      REQUIRE(raw.call(helloFrame()) == CKR_OK);
      wire::Bytes partial;
      put(partial, 100, 4);
      put(partial, 2, 2);  // GetSlotList, then 8 more bytes of the 98 promised
      partial.resize(partial.size() + 8, 0x01);
      REQUIRE(raw.send(partial));
    }
  }
  SECTION("a connection that does not start with Hello is closed") {
    RawConnection raw(socket);
    REQUIRE(raw.send(request(2, {0})));
    CHECK(raw.closedByPeer());
  }
  SECTION("a Hello with a protocol version outside 1..2 is refused, 1 and 2 are welcome") {
    for (const std::uint32_t version : {0u, 3u, 99u}) {
      INFO("protocol " << version);
      RawConnection raw(socket);
      CHECK(raw.call(helloFrame(version)) == std::optional<std::uint64_t>(CKR_FUNCTION_FAILED));
      CHECK(raw.closedByPeer());
    }
    CHECK(eventually([&] {
      return daemon.log().find("speaks protocol 99, this dojangd speaks 1..2; restart the older one") !=
             std::string::npos;
    }));
    for (const std::uint32_t version : {1u, 2u}) {
      INFO("protocol " << version);
      RawConnection raw(socket);
      REQUIRE(raw.send(helloFrame(version)));
      const auto reply = raw.receive();
      REQUIRE(reply.has_value());
      wire::Decoder decoder(*reply);
      std::uint64_t rv = 0;
      decoder.read(rv);
      CHECK(rv == CKR_OK);
      wire::HelloReply hello;
      decoder.read(hello);
      CHECK(hello.protocolVersion == version);
    }
  }
  SECTION("well-formed frames with bad requests get error replies after Hello") {
    RawConnection raw(socket);
    REQUIRE(raw.call(helloFrame()) == CKR_OK);
    struct Bad {
      const char* what;
      wire::Bytes frame;
      std::optional<CK_RV> expected;
    };
    std::vector<Bad> bads;
    bads.push_back({"unknown call id 999", request(999), CKR_FUNCTION_NOT_SUPPORTED});
    bads.push_back({"unknown call id 0xFFFF with fields", request(0xFFFF, {1, 2, 3, 4}), CKR_FUNCTION_NOT_SUPPORTED});
    bads.push_back({"empty payload", withLength({}), std::nullopt});
    bads.push_back({"one byte payload", withLength({0x02}), std::nullopt});
    bads.push_back({"GetSlotInfo with half a slot id", request(3, {1, 0, 0, 0}), CKR_ARGUMENTS_BAD});
    bads.push_back({"GetSlotList with a boolean of 7", request(2, {7}), CKR_ARGUMENTS_BAD});
    bads.push_back({"GetSlotList with trailing bytes", request(2, {0, 0xEE, 0xEE}), CKR_ARGUMENTS_BAD});
    {
      wire::Bytes fields;
      put(fields, 1, 8);           // session
      put(fields, 0xFFFFFFFF, 4);  // attribute count
      bads.push_back({"FindObjects with a template of 2^32-1 attributes", request(20, fields), CKR_ARGUMENTS_BAD});
    }
    {
      wire::Bytes fields;
      put(fields, 1, 8);      // session
      put(fields, 1, 8);      // object
      put(fields, 65536, 4);  // types: at the limit, but no bytes follow
      bads.push_back({"GetAttributeValue with 65536 types and no data", request(21, fields), CKR_ARGUMENTS_BAD});
    }
    {
      wire::Bytes fields;
      put(fields, 1, 8);  // session
      put(fields, 1, 8);  // mechanism type
      put(fields, 0xFFFFFFF0, 4);  // parameter length far beyond the frame
      bads.push_back({"Sign with a mechanism parameter longer than the frame", request(32, fields), CKR_ARGUMENTS_BAD});
    }
    {
      wire::Bytes fields;
      put(fields, 1, 8);  // session
      put(fields, 1, 8);  // user type
      fields.push_back(1);
      put(fields, 0x7FFFFFFF, 4);  // PIN length
      bads.push_back({"Login with a 2 GB PIN", request(14, fields), CKR_ARGUMENTS_BAD});
    }
    {
      wire::Bytes fields;
      put(fields, 0xDEADBEEF, 8);  // a session nobody opened
      bads.push_back({"CloseSession of an unknown handle", request(11, fields), std::nullopt});
      bads.push_back({"GetSessionInfo of an unknown handle", request(13, fields), CKR_SESSION_HANDLE_INVALID});
    }
    {
      wire::Bytes fields;
      put(fields, 0xDEADBEEF, 8);  // slot
      bads.push_back({"GetTokenInfo of an unknown slot", request(4, fields), CKR_SLOT_ID_INVALID});
    }
    for (const auto& bad : bads) {
      INFO(bad.what);
      const auto rv = raw.call(bad.frame);
      INFO("timed out: " << raw.timedOut());
      REQUIRE(rv.has_value());
      CHECK(*rv != CKR_OK);
      if (bad.expected) {
        CHECK(ckRvName(*rv) == ckRvName(*bad.expected));
      }
    }
    // The same connection still serves good requests.
    CHECK(raw.call(request(2, {0})) == CKR_OK);
  }
  SECTION("200 random frames from a fixed seed") {
    std::mt19937 random(20240611);
    const std::vector<std::uint16_t> ids = {1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 15, 16, 17, 20, 21, 22,
                                            23, 24, 30, 31, 32, 33, 34, 35, 36, 37, 50};
    auto raw = std::make_unique<RawConnection>(socket);
    REQUIRE(raw->call(helloFrame()) == CKR_OK);
    int replies = 0;
    int errors = 0;
    int closed = 0;
    for (int i = 0; i < 200; ++i) {
      wire::Bytes payload;
      // Mostly real call ids with random fields (to reach the decoders), some random ids.
      // Never WaitForSlotEvent: a random "block" flag would legitimately wait forever.
      const std::uint16_t id = random() % 4 != 0 ? ids[random() % ids.size()] : static_cast<std::uint16_t>(random());
      put(payload, id == 6 ? 7 : id, 2);
      const std::size_t length = random() % 3 == 0 ? random() % 8 : random() % 200;
      for (std::size_t b = 0; b < length; ++b) {
        payload.push_back(static_cast<std::uint8_t>(random()));
      }
      INFO("frame " << i << " id " << id << " length " << payload.size());
      if (random() % 10 == 0) {
        // A lying length prefix (shorter than the bytes sent): the rest would be read as the next
        // frame, so this goes on a connection of its own that is dropped afterwards.
        wire::Bytes frame;
        put(frame, random() % (payload.size() + 1), 4);
        frame.insert(frame.end(), payload.begin(), payload.end());
        RawConnection liar(socket);
        REQUIRE(liar.call(helloFrame()) == CKR_OK);
        // The frame it announced is all there: that one is answered.
        CHECK(liar.call(frame).has_value());
        CHECK_FALSE(liar.timedOut());
        continue;
      }
      const auto rv = raw->call(withLength(payload));
      CHECK_FALSE(raw->timedOut());
      if (rv) {
        ++replies;
        errors += *rv != CKR_OK ? 1 : 0;
      } else {
        ++closed;
        raw = std::make_unique<RawConnection>(socket);
        REQUIRE(raw->call(helloFrame()) == CKR_OK);
      }
    }
    INFO(replies << " replies, " << errors << " of them errors, " << closed << " connections closed");
    CHECK(replies > 100);
    CHECK(errors > 100);
    // Raw garbage on fresh connections, no Hello.
    for (int i = 0; i < 20; ++i) {
      RawConnection garbage(socket);
      wire::Bytes bytes(random() % 64);
      for (auto& byte : bytes) {
        byte = static_cast<std::uint8_t>(random());
      }
      (void)garbage.send(bytes);
    }
  }

  // Whatever happened above: the same daemon, serving a real client.
  INFO("dojangd log:\n" << daemon.log());
  CHECK(daemon.pid() == pid);
  CHECK(processAlive(pid));
  const auto listing = runCommand({"pkcs11-tool", "--module", dojangModulePath(), "-L"}, daemon.env());
  INFO("pkcs11-tool -L: " << listing.out << listing.err);
  CHECK(listing.exitCode == 0);
  CHECK(listing.out.find(kTokenLabel) != std::string::npos);
  CHECK(daemon.stop() == 0);
}

TEST_CASE("a forked child must call C_Initialize before it can use the module", "[integration][robustness]") {
  Fixture fixture;
  auto& p11 = fixture.p11();
  REQUIRE(fixture.module.initialize() == CKR_OK);
  CK_ULONG parentCount = 0;
  REQUIRE(p11.C_GetSlotList(CK_TRUE, nullptr, &parentCount) == CKR_OK);
  REQUIRE(parentCount >= 1);

  std::fflush(nullptr);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    // Exit codes: 0 all as expected; 10+n the nth step went wrong.
    CK_ULONG count = 0;
    if (p11.C_GetSlotList(CK_TRUE, nullptr, &count) != CKR_CRYPTOKI_NOT_INITIALIZED) {
      ::_exit(11);
    }
    CK_SESSION_HANDLE session = CK_INVALID_HANDLE;
    if (p11.C_OpenSession(1, CKF_SERIAL_SESSION, nullptr, nullptr, &session) != CKR_CRYPTOKI_NOT_INITIALIZED) {
      ::_exit(12);
    }
    if (fixture.module.initialize() != CKR_OK) {
      ::_exit(13);
    }
    if (p11.C_GetSlotList(CK_TRUE, nullptr, &count) != CKR_OK || count < 1) {
      ::_exit(14);
    }
    std::vector<CK_SLOT_ID> slots(count);
    if (p11.C_GetSlotList(CK_TRUE, slots.data(), &count) != CKR_OK ||
        p11.C_OpenSession(slots[0], CKF_SERIAL_SESSION, nullptr, nullptr, &session) != CKR_OK) {
      ::_exit(15);
    }
    if (login(p11, session) != CKR_OK) {
      ::_exit(16);
    }
    if (p11.C_Finalize(nullptr) != CKR_OK) {
      ::_exit(17);
    }
    ::_exit(0);
  }
  int status = 0;
  const bool finished = eventually([&] { return ::waitpid(child, &status, WNOHANG) == child; },
                                   std::chrono::seconds(60));
  if (!finished) {
    ::kill(child, SIGKILL);
    ::waitpid(child, &status, 0);
  }
  INFO("dojangd log:\n" << fixture.daemon.log());
  REQUIRE(finished);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);

  // The parent is unaffected by its child's C_Initialize and C_Finalize.
  CK_ULONG again = 0;
  CHECK(p11.C_GetSlotList(CK_TRUE, nullptr, &again) == CKR_OK);
  CHECK(again == parentCount);
  REQUIRE(fixture.module.finalize() == CKR_OK);
  CHECK(fixture.daemon.stop() == 0);
}

TEST_CASE("C_Finalize in another thread ends a blocking C_WaitForSlotEvent", "[integration][robustness]") {
  Fixture fixture;
  auto& p11 = fixture.p11();
  REQUIRE(fixture.module.initialize() == CKR_OK);

  SECTION("CKF_DONT_BLOCK with nothing happening is CKR_NO_EVENT") {
    CK_SLOT_ID slot = 0;
    CHECK(ckRvName(p11.C_WaitForSlotEvent(CKF_DONT_BLOCK, &slot, nullptr)) == ckRvName(CKR_NO_EVENT));
    CHECK(ckRvName(p11.C_WaitForSlotEvent(CKF_DONT_BLOCK, &slot, nullptr)) == ckRvName(CKR_NO_EVENT));
    REQUIRE(fixture.module.finalize() == CKR_OK);
  }
  SECTION("a blocked waiter gets CKR_CRYPTOKI_NOT_INITIALIZED") {
    std::promise<CK_RV> result;
    auto future = result.get_future();
    std::thread waiter([&] {
      CK_SLOT_ID slot = 0;
      result.set_value(p11.C_WaitForSlotEvent(0, &slot, nullptr));
    });
    // It is blocked (nothing happens to the token), and stays so until C_Finalize.
    const bool blocked = future.wait_for(std::chrono::milliseconds(500)) == std::future_status::timeout;
    CHECK(blocked);
    CHECK(fixture.module.finalize() == CKR_OK);
    const bool woke = future.wait_for(std::chrono::seconds(5)) == std::future_status::ready;
    if (!woke) {
      // Do not leave a thread blocked in a module about to be unloaded: take the daemon away.
      fixture.daemon.kill9();
    }
    waiter.join();
    CHECK(woke);
    CHECK(ckRvName(future.get()) == ckRvName(CKR_CRYPTOKI_NOT_INITIALIZED));
  }
  if (fixture.daemon.running()) {
    CHECK(fixture.daemon.stop() == 0);
  }
}

// DOJANG_TIMEOUT_MS for one test; read by C_Initialize.
class ReplyTimeout final {
 public:
  explicit ReplyTimeout(const char* milliseconds) { ::setenv("DOJANG_TIMEOUT_MS", milliseconds, 1); }
  ~ReplyTimeout() { ::unsetenv("DOJANG_TIMEOUT_MS"); }
  ReplyTimeout(const ReplyTimeout&) = delete;
  ReplyTimeout& operator=(const ReplyTimeout&) = delete;
};

// SIGSTOP now, SIGCONT at the latest when the owner dies.
class StoppedProcess final {
 public:
  explicit StoppedProcess(pid_t pid) : m_pid(pid) {
    REQUIRE(::kill(m_pid, SIGSTOP) == 0);
    // The signal takes effect asynchronously: wait until every thread has stopped.
    REQUIRE(eventually([pid] {
      for (const auto& task : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task")) {
        std::ifstream stat(task.path() / "stat");
        std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
        const auto close = text.rfind(')');
        if (close == std::string::npos || close + 2 >= text.size() || text[close + 2] != 'T') {
          return false;
        }
      }
      return true;
    }));
  }
  ~StoppedProcess() { resume(); }
  StoppedProcess(const StoppedProcess&) = delete;
  StoppedProcess& operator=(const StoppedProcess&) = delete;
  void resume() {
    if (m_pid > 0) {
      ::kill(m_pid, SIGCONT);
      m_pid = -1;
    }
  }

 private:
  pid_t m_pid;
};

TEST_CASE("a stopped dojangd: calls give up with CKR_DEVICE_ERROR, and work again once it resumes",
          "[integration][robustness][timeouts]") {
  ReplyTimeout timeout("1500");
  Fixture fixture;
  auto& p11 = fixture.p11();
  REQUIRE(fixture.module.initialize() == CKR_OK);
  const CK_SLOT_ID slot = slotWithLabel(p11, kTokenLabel);
  CK_SESSION_HANDLE session = CK_INVALID_HANDLE;
  REQUIRE(p11.C_OpenSession(slot, CKF_SERIAL_SESSION, nullptr, nullptr, &session) == CKR_OK);
  {
    StoppedProcess stopped(fixture.daemon.pid());
    CK_SESSION_INFO info{};
    auto start = std::chrono::steady_clock::now();
    CHECK(ckRvName(p11.C_GetSessionInfo(session, &info)) == ckRvName(CKR_DEVICE_ERROR));
    auto waited = std::chrono::steady_clock::now() - start;
    CHECK(waited >= std::chrono::milliseconds(1400));
    CHECK(waited < std::chrono::seconds(10));
    // The next call needs a new connection: connecting and Hello give up too.
    start = std::chrono::steady_clock::now();
    CK_ULONG count = 0;
    CHECK(ckRvName(p11.C_GetSlotList(CK_TRUE, nullptr, &count)) == ckRvName(CKR_DEVICE_ERROR));
    waited = std::chrono::steady_clock::now() - start;
    CHECK(waited < std::chrono::seconds(10));
    stopped.resume();
  }
  INFO("dojangd log:\n" << fixture.daemon.log());
  // The connections given up on are gone; if they were this client's last, so are its sessions
  // (the daemon cannot tell that from a client that went away). New ones work.
  CK_ULONG count = 0;
  CHECK(ckRvName(p11.C_GetSlotList(CK_TRUE, nullptr, &count)) == ckRvName(CKR_OK));
  CHECK(count >= 1);
  CK_SESSION_HANDLE fresh = CK_INVALID_HANDLE;
  REQUIRE(ckRvName(p11.C_OpenSession(slot, CKF_SERIAL_SESSION, nullptr, nullptr, &fresh)) == ckRvName(CKR_OK));
  CK_SESSION_INFO info{};
  CHECK(ckRvName(p11.C_GetSessionInfo(fresh, &info)) == ckRvName(CKR_OK));
  CHECK(info.slotID == slot);
  REQUIRE(fixture.module.finalize() == CKR_OK);
  CHECK(fixture.daemon.stop() == 0);
}

TEST_CASE("keepalives: a blocking C_WaitForSlotEvent outlives the reply timeout", "[integration][robustness][timeouts]") {
  ReplyTimeout timeout("1000");
  Fixture fixture;
  auto& p11 = fixture.p11();
  REQUIRE(fixture.module.initialize() == CKR_OK);
  std::promise<CK_RV> result;
  auto future = result.get_future();
  std::thread waiter([&] {
    CK_SLOT_ID slot = 0;
    result.set_value(p11.C_WaitForSlotEvent(0, &slot, nullptr));
  });
  const bool stillWaiting = future.wait_for(std::chrono::seconds(3)) == std::future_status::timeout;
  CHECK(stillWaiting);
  CHECK(fixture.module.finalize() == CKR_OK);
  const bool woke = future.wait_for(std::chrono::seconds(5)) == std::future_status::ready;
  if (!woke) {
    fixture.daemon.kill9();
  }
  waiter.join();
  CHECK(woke);
  CHECK(ckRvName(future.get()) == ckRvName(CKR_CRYPTOKI_NOT_INITIALIZED));
  if (fixture.daemon.running()) {
    CHECK(fixture.daemon.stop() == 0);
  }
}

TEST_CASE("the module starts dojangd when nobody serves the socket", "[integration][robustness]") {
  SoftHsmToken token{{kTokenLabel, kPin, "12345678"}};
  TempDir dir("dojang-autostart-");
  const auto socket = dir / "run" / "sock";  // the daemon makes its own directory
  const auto config = dir / "dojangd.toml";
  writeFile(config, dojangdConfigFor(token));
  REQUIRE(std::getenv("DOJANGD") != nullptr);
  ::setenv("DOJANG_SOCKET", socket.c_str(), 1);
  ::setenv("DOJANG_CONFIG", config.c_str(), 1);
  ::setenv("SOFTHSM2_CONF", token.configPath().c_str(), 1);
  ::unsetenv("DOJANG_NO_AUTOSTART");
  REQUIRE_FALSE(std::filesystem::exists(socket));

  std::optional<pid_t> started;
  {
    DojangModule module;
    const CK_RV rv = module.initialize();
    INFO("C_Initialize " << ckRvName(rv) << "\nlog:\n"
                         << (std::filesystem::exists(socket.string() + ".log") ? readFile(socket.string() + ".log")
                                                                               : std::string("(none)")));
    REQUIRE(rv == CKR_OK);
    REQUIRE(std::filesystem::exists(socket));
    CHECK(slotWithLabel(module.functions(), kTokenLabel) >= 1);

    // Who serves the socket: the listening process's credentials, as SO_PEERCRED reports them.
    RawConnection raw(socket);
    ucred peer{};
    socklen_t length = sizeof peer;
    REQUIRE(::getsockopt(raw.fd(), SOL_SOCKET, SO_PEERCRED, &peer, &length) == 0);
    started = peer.pid;
    CHECK(peer.pid != ::getpid());
    CHECK(processAlive(peer.pid));
    REQUIRE(module.finalize() == CKR_OK);
  }
  ::setenv("DOJANG_NO_AUTOSTART", "1", 1);
  ::unsetenv("DOJANG_CONFIG");

  // Clean up what the module started: it is not our child, so watch it go.
  REQUIRE(started);
  REQUIRE(::kill(*started, SIGTERM) == 0);
  const bool gone = eventually([&] { return !processAlive(*started); });
  if (!gone) {
    ::kill(*started, SIGKILL);
  }
  CHECK(gone);
  CHECK(eventually([&] { return !std::filesystem::exists(socket); }));
}

TEST_CASE("SIGTERM stops dojangd cleanly, even with a client connected", "[integration][robustness]") {
  Fixture fixture;
  auto& p11 = fixture.p11();
  REQUIRE(fixture.module.initialize() == CKR_OK);
  const CK_SLOT_ID slot = slotWithLabel(p11, kTokenLabel);
  CK_SESSION_HANDLE session = CK_INVALID_HANDLE;
  REQUIRE(p11.C_OpenSession(slot, CKF_SERIAL_SESSION, nullptr, nullptr, &session) == CKR_OK);
  REQUIRE(login(p11, session) == CKR_OK);

  const auto socket = fixture.daemon.socketPath();
  REQUIRE(std::filesystem::exists(socket));
  const int status = fixture.daemon.stop();
  INFO("dojangd log:\n" << fixture.daemon.log());
  CHECK(status == 0);
  CHECK_FALSE(std::filesystem::exists(socket));
  CHECK(fixture.daemon.log().find("stopped") != std::string::npos);

  // The client finds the daemon gone (an error, not a hang), and can still finalise.
  CK_SESSION_INFO info{};
  CHECK(p11.C_GetSessionInfo(session, &info) != CKR_OK);
  CHECK(fixture.module.finalize() == CKR_OK);
}
