// Protocol tier: version negotiation and reply timeouts. The module's real entry points talk to
// a scripted stand-in for dojangd (an old one, a newer one, one that stops answering) over
// in-memory transports; the daemon's side of Hello is the real Service with no backends.
#include <unistd.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "pkcs11/frontend_testing.h"
#include "src/common/cryptoki/cryptoki.h"
#include "src/common/wire/codec.h"
#include "src/common/wire/transport.h"
#include "src/daemon/server.h"
#include "src/daemon/service.h"
#include "src/daemon/slot_table.h"

namespace core = dojang::daemon;
namespace wire = dojang::wire;
using namespace std::chrono_literals;

namespace {

// One request as the stand-in saw it: its call id and, for Hello, the version offered.
struct Seen {
  std::uint16_t id = 0;
  std::uint32_t helloVersion = 0;
};

// What the stand-in does with one request: send a reply frame, or nothing (false: close).
using Script = std::function<bool(wire::Transport&, const Seen&, wire::Bytes& frame)>;

class ScriptedDaemon final {
 public:
  explicit ScriptedDaemon(Script script) : m_script(std::move(script)) {}
  ScriptedDaemon(const ScriptedDaemon&) = delete;
  ScriptedDaemon& operator=(const ScriptedDaemon&) = delete;
  ~ScriptedDaemon() {
    std::lock_guard lock(m_mutex);
    for (auto& end : m_ends) {
      end->shutdown();
    }
    for (auto& thread : m_threads) {
      thread.join();
    }
  }

  std::unique_ptr<wire::Transport> connect() {
    auto [client, server] = wire::makeMemoryTransportPair();
    std::shared_ptr<wire::Transport> end = std::move(server);
    std::lock_guard lock(m_mutex);
    m_ends.push_back(end);
    m_threads.emplace_back([this, end] { serve(*end); });
    return std::move(client);
  }
  std::vector<Seen> seen() {
    std::lock_guard lock(m_mutex);
    return m_seen;
  }
  std::size_t count(wire::CallId id) {
    std::lock_guard lock(m_mutex);
    return static_cast<std::size_t>(std::count_if(m_seen.begin(), m_seen.end(), [id](const Seen& s) {
      return s.id == static_cast<std::uint16_t>(id);
    }));
  }

 private:
  void serve(wire::Transport& transport) {
    wire::Bytes payload;
    wire::Bytes frame;
    try {
      for (;;) {
        transport.receive(payload);
        wire::Decoder decoder(payload);
        Seen seen;
        decoder.read(seen.id);
        if (seen.id == static_cast<std::uint16_t>(wire::CallId::Hello)) {
          decoder.read(seen.helloVersion);
        }
        {
          std::lock_guard lock(m_mutex);
          m_seen.push_back(seen);
        }
        if (!m_script(transport, seen, frame)) {
          return;
        }
      }
    } catch (const wire::TransportClosed&) {
    }
  }

  Script m_script;
  std::mutex m_mutex;
  std::vector<Seen> m_seen;
  std::vector<std::shared_ptr<wire::Transport>> m_ends;
  std::vector<std::thread> m_threads;
};

wire::HelloReply helloReply(std::uint32_t version) {
  wire::HelloReply reply;
  reply.protocolVersion = version;
  reply.daemonInstance.assign(16, 0x5a);
  reply.daemonPid = 4321;
  return reply;
}

// Answers Hello as told and everything else as an empty daemon would.
bool answerPlainly(wire::Transport& transport, const Seen& seen, wire::Bytes& frame) {
  switch (static_cast<wire::CallId>(seen.id)) {
    case wire::CallId::GetSlotList: {
      const wire::GetSlotListReply reply{{7}};
      wire::encodeReply(CKR_OK, &reply, frame);
      break;
    }
    default:
      wire::encodeReply<wire::Empty>(CKR_FUNCTION_NOT_SUPPORTED, nullptr, frame);
  }
  transport.send(frame);
  return true;
}

// A dojangd of protocol 1 as released: any other version is refused with the bare error.
bool protocolOneDaemon(wire::Transport& transport, const Seen& seen, wire::Bytes& frame) {
  if (seen.id != static_cast<std::uint16_t>(wire::CallId::Hello)) {
    return answerPlainly(transport, seen, frame);
  }
  if (seen.helloVersion != 1) {
    wire::encodeReply<wire::Empty>(CKR_FUNCTION_FAILED, nullptr, frame);
    transport.send(frame);
    return false;
  }
  const auto reply = helloReply(1);
  wire::encodeReply(CKR_OK, &reply, frame);
  transport.send(frame);
  return true;
}

// What the module writes to stderr while `action` runs.
std::string stderrOf(const std::function<void()>& action) {
  std::fflush(stderr);
  FILE* capture = std::tmpfile();
  REQUIRE(capture != nullptr);
  const int saved = ::dup(2);
  ::dup2(::fileno(capture), 2);
  action();
  std::fflush(stderr);
  ::dup2(saved, 2);
  ::close(saved);
  std::string text;
  std::rewind(capture);
  for (int c = std::fgetc(capture); c != EOF; c = std::fgetc(capture)) {
    text.push_back(static_cast<char>(c));
  }
  std::fclose(capture);
  return text;
}

std::size_t linesIn(const std::string& text) { return static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n')); }

// The module's function list, pointed at a stand-in; finalised and unhooked at the end.
class ModuleOver final {
 public:
  explicit ModuleOver(ScriptedDaemon& daemon) {
    dojang::frontend::setConnectorForTesting([&daemon] { return daemon.connect(); });
    p11 = dojang::frontend::functionListForTesting();
  }
  ModuleOver(const ModuleOver&) = delete;
  ModuleOver& operator=(const ModuleOver&) = delete;
  ~ModuleOver() {
    p11->C_Finalize(nullptr);
    dojang::frontend::setConnectorForTesting(nullptr);
  }
  CK_FUNCTION_LIST* p11 = nullptr;
};

// DOJANG_TIMEOUT_MS for the lifetime of the object.
class TimeoutSetting final {
 public:
  explicit TimeoutSetting(const char* value) { ::setenv("DOJANG_TIMEOUT_MS", value, 1); }
  ~TimeoutSetting() { ::unsetenv("DOJANG_TIMEOUT_MS"); }
  TimeoutSetting(const TimeoutSetting&) = delete;
  TimeoutSetting& operator=(const TimeoutSetting&) = delete;
};

// A raw Hello to the real daemon core: its CK_RV and whatever HelloReply came with it.
struct HelloResult {
  std::uint64_t rv = 0;
  wire::HelloReply reply;
};

HelloResult helloTo(core::Service& service, std::uint32_t version) {
  auto ends = wire::makeMemoryTransportPair();
  auto& client = ends.first;
  wire::Transport& server = *ends.second;
  std::thread serving([&service, &server] { core::Server::serveConnection(service, server, [] { return false; }); });
  wire::HelloRequest hello;
  hello.protocolVersion = version;
  hello.clientId.assign(16, static_cast<std::uint8_t>(version + 1));
  hello.pid = 99;
  hello.program = "protocol_versions_test";
  wire::Bytes frame;
  wire::encodeRequest<wire::CallId::Hello>(hello, frame);
  client->send(frame);
  wire::Bytes payload;
  client->receive(payload);
  HelloResult result;
  wire::Decoder decoder(payload);
  decoder.read(result.rv);
  decoder.read(result.reply);
  decoder.expectEnd();
  client->shutdown();
  serving.join();
  return result;
}

}  // namespace

TEST_CASE("the daemon accepts protocols 1..2 and answers with the one both speak", "[protocol][versions]") {
  core::SlotTable slots({});
  core::Service service(slots, {});
  const auto refusedLow = helloTo(service, 0);
  CHECK(refusedLow.rv == CKR_FUNCTION_FAILED);
  CHECK(refusedLow.reply.protocolVersion == wire::kProtocolVersion);  // the refusal names the daemon
  CHECK(refusedLow.reply.daemonPid == static_cast<std::uint32_t>(::getpid()));
  CHECK(helloTo(service, 99).rv == CKR_FUNCTION_FAILED);
  const auto one = helloTo(service, 1);
  CHECK(one.rv == CKR_OK);
  CHECK(one.reply.protocolVersion == 1);
  const auto two = helloTo(service, 2);
  CHECK(two.rv == CKR_OK);
  CHECK(two.reply.protocolVersion == 2);
}

TEST_CASE("the module works with a protocol 1 dojangd", "[protocol][versions]") {
  ScriptedDaemon daemon(protocolOneDaemon);
  ModuleOver module(daemon);
  const auto said = stderrOf([&] { REQUIRE(module.p11->C_Initialize(nullptr) == CKR_OK); });
  CHECK(said.empty());
  CK_ULONG count = 0;
  REQUIRE(module.p11->C_GetSlotList(CK_FALSE, nullptr, &count) == CKR_OK);
  CHECK(count == 1);
  // The module offered 2 first; refused, it fell back to 1 once and stayed there.
  const auto seen = daemon.seen();
  REQUIRE(seen.size() >= 2);
  CHECK(seen[0].helloVersion == 2);
  CHECK(seen[1].helloVersion == 1);
  CHECK(daemon.count(wire::CallId::Hello) == 2);
}

TEST_CASE("a dojangd that speaks no protocol of the module: C_Initialize fails and says why once",
          "[protocol][versions]") {
  dojang::frontend::resetMismatchReportForTesting();
  SECTION("it announces a newer protocol") {
    ScriptedDaemon daemon([](wire::Transport& transport, const Seen& seen, wire::Bytes& frame) {
      if (seen.id != static_cast<std::uint16_t>(wire::CallId::Hello)) {
        return answerPlainly(transport, seen, frame);
      }
      const auto reply = helloReply(99);
      wire::encodeReply(CKR_OK, &reply, frame);
      transport.send(frame);
      return true;
    });
    ModuleOver module(daemon);
    const auto first = stderrOf([&] { CHECK(module.p11->C_Initialize(nullptr) == CKR_DEVICE_ERROR); });
    CHECK(linesIn(first) == 1);
    CHECK(first == "dojang-pkcs11: dojangd (pid 4321) speaks protocol 99, this module speaks 1..2; restart this "
                   "program (its dojang-pkcs11.so is older)\n");
    const auto second = stderrOf([&] { CHECK(module.p11->C_Initialize(nullptr) == CKR_DEVICE_ERROR); });
    CHECK(second.empty());
    // One more try with the oldest version, never more.
    const auto seen = daemon.seen();
    REQUIRE(seen.size() == 4);
    CHECK(seen[0].helloVersion == 2);
    CHECK(seen[1].helloVersion == 1);
  }
  SECTION("it refuses both versions and names its own") {
    ScriptedDaemon daemon([](wire::Transport& transport, const Seen&, wire::Bytes& frame) {
      const auto about = helloReply(0);
      wire::encodeReply<wire::Empty>(CKR_FUNCTION_FAILED, nullptr, frame);
      wire::Encoder(frame).write(about);
      transport.send(frame);
      return false;
    });
    ModuleOver module(daemon);
    const auto said = stderrOf([&] { CHECK(module.p11->C_Initialize(nullptr) == CKR_DEVICE_ERROR); });
    CHECK(said == "dojang-pkcs11: dojangd (pid 4321) speaks protocol 0, this module speaks 1..2; restart dojangd "
                  "(it is older)\n");
    CHECK(daemon.count(wire::CallId::Hello) == 2);
  }
  SECTION("it refuses without saying more") {
    ScriptedDaemon daemon([](wire::Transport& transport, const Seen&, wire::Bytes& frame) {
      wire::encodeReply<wire::Empty>(CKR_FUNCTION_FAILED, nullptr, frame);
      transport.send(frame);
      return false;
    });
    ModuleOver module(daemon);
    const auto said = stderrOf([&] { CHECK(module.p11->C_Initialize(nullptr) == CKR_DEVICE_ERROR); });
    CHECK(linesIn(said) == 1);
    CHECK(said.find("refused protocols 1..2") != std::string::npos);
  }
}

TEST_CASE("a call dojangd does not answer in time fails with CKR_DEVICE_ERROR and is not retried",
          "[protocol][timeouts]") {
  TimeoutSetting timeout("1000");
  std::atomic<int> slotInfoRequests{0};
  ScriptedDaemon daemon([&](wire::Transport& transport, const Seen& seen, wire::Bytes& frame) {
    if (seen.id == static_cast<std::uint16_t>(wire::CallId::Hello)) {
      const auto reply = helloReply(2);
      wire::encodeReply(CKR_OK, &reply, frame);
      transport.send(frame);
      return true;
    }
    if (seen.id == static_cast<std::uint16_t>(wire::CallId::GetSlotInfo)) {
      ++slotInfoRequests;
      // Wedged: answers after the module gave up, on the connection it was asked on.
      std::this_thread::sleep_for(1500ms);
      wire::encodeReply<wire::Empty>(CKR_SLOT_ID_INVALID, nullptr, frame);
      try {
        transport.send(frame);
      } catch (const wire::TransportClosed&) {
      }
      return true;
    }
    return answerPlainly(transport, seen, frame);
  });
  ModuleOver module(daemon);
  REQUIRE(module.p11->C_Initialize(nullptr) == CKR_OK);
  CK_SLOT_INFO info{};
  const auto start = std::chrono::steady_clock::now();
  CHECK(module.p11->C_GetSlotInfo(7, &info) == CKR_DEVICE_ERROR);
  const auto waited = std::chrono::steady_clock::now() - start;
  CHECK(waited >= 900ms);
  CHECK(waited < 10s);
  CHECK(slotInfoRequests == 1);
  // The late reply is never taken for the answer to the next call.
  std::this_thread::sleep_for(1000ms);
  CK_ULONG count = 0;
  CHECK(module.p11->C_GetSlotList(CK_FALSE, nullptr, &count) == CKR_OK);
  CHECK(count == 1);
  CHECK(slotInfoRequests == 1);
}

TEST_CASE("keepalives keep a blocking C_WaitForSlotEvent waiting past the timeout", "[protocol][timeouts]") {
  TimeoutSetting timeout("1000");
  core::SlotTable slots({});
  core::Service service(slots, {});
  std::mutex mutex;
  std::vector<std::shared_ptr<wire::Transport>> ends;
  std::vector<std::thread> threads;
  dojang::frontend::setConnectorForTesting([&]() -> std::unique_ptr<wire::Transport> {
    auto [client, server] = wire::makeMemoryTransportPair();
    std::shared_ptr<wire::Transport> end = std::move(server);
    std::lock_guard lock(mutex);
    ends.push_back(end);
    threads.emplace_back([&service, end] { core::Server::serveConnection(service, *end, [] { return false; }); });
    return std::move(client);
  });
  auto* p11 = dojang::frontend::functionListForTesting();
  REQUIRE(p11->C_Initialize(nullptr) == CKR_OK);
  auto result = std::async(std::launch::async, [p11] {
    CK_SLOT_ID slot = 0;
    return p11->C_WaitForSlotEvent(0, &slot, nullptr);
  });
  CHECK(result.wait_for(3s) == std::future_status::timeout);
  CHECK(p11->C_Finalize(nullptr) == CKR_OK);
  REQUIRE(result.wait_for(10s) == std::future_status::ready);
  CHECK(result.get() == CKR_CRYPTOKI_NOT_INITIALIZED);
  dojang::frontend::setConnectorForTesting(nullptr);
  service.setStopping();
  std::lock_guard lock(mutex);
  for (auto& end : ends) {
    end->shutdown();
  }
  for (auto& thread : threads) {
    thread.join();
  }
}
