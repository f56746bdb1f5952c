// libFuzzer target for everything a client can put on the socket.
//
// Each input is one or more request payloads (call id, then fields), separated by kSeparator.
// Every payload is
//   1. decoded as each request and reply type of DOJANG_WIRE_CALLS; whatever decodes must
//      re-encode to the very same bytes (the encoding is canonical), and
//   2. dispatched to a real Service over a SlotTable whose one driver is the in-memory fake
//      token of tests/unit/fake_token.h, for a client that said Hello, opened two sessions
//      (read-write and read-only) and logged in. A session field of 0 or 1 in a request is
//      replaced with those sessions' handles, so inputs reach the handlers behind the session
//      lookup. The reply must be a well-formed frame for that call.
// Everything is rebuilt for each input so that a crash reproduces from its input alone.
// To replay one input: DOJANG_FUZZ_TRACE=1 build-fuzz/fuzz/wire_decoder_fuzz FILE
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>
#include <vector>

#include "src/common/wire/calls.h"
#include "src/common/wire/codec.h"
#include "src/daemon/dispatcher.h"
#include "src/daemon/service.h"
#include "src/daemon/slot_table.h"
#include "tests/unit/fake_token.h"

namespace core = dojang::daemon;
namespace wire = dojang::wire;

namespace {

// Between two payloads of one input; also in fuzz/wire.dict.
constexpr std::uint8_t kSeparator[] = {0xd0, 0x7a, 0x4e, 0x61};
constexpr std::size_t kMaxPayloads = 16;
// DOJANG_FUZZ_TRACE=1 prints each call and its CK_RV to stdout (for reading a crash input).
const bool kTrace = std::getenv("DOJANG_FUZZ_TRACE") != nullptr;

[[noreturn]] void violated(const char* what) {
  // A property of the protocol broke; libFuzzer saves the input.
  (void)std::fputs(what, stderr);
  std::abort();
}

template <class T>
void checkCanonical(std::span<const std::uint8_t> bytes) {
  T value{};
  try {
    wire::Decoder decoder(bytes);
    decoder.read(value);
    decoder.expectEnd();
  } catch (const wire::MalformedFrame&) {
    return;
  }
  wire::Bytes again;
  wire::Encoder encoder(again);
  encoder.write(value);
  if (again.size() != bytes.size() || !std::equal(again.begin(), again.end(), bytes.begin())) {
    violated("decoded message does not re-encode to the same bytes\n");
  }
}

void decodeAsEveryType(std::span<const std::uint8_t> payload) {
#define DOJANG_FUZZ_DECODE(id, name, request, reply) \
  checkCanonical<wire::request>(payload);            \
  checkCanonical<wire::reply>(payload);
  DOJANG_WIRE_CALLS(DOJANG_FUZZ_DECODE)
#undef DOJANG_FUZZ_DECODE
  // As the server reads a request: the call id, then that call's request.
  if (payload.size() < 2) {
    return;
  }
  const auto fields = payload.subspan(2);
  switch (static_cast<std::uint16_t>(payload[0] | (payload[1] << 8))) {
#define DOJANG_FUZZ_REQUEST(number, name, request, reply) \
  case number:                                            \
    checkCanonical<wire::request>(fields);                \
    break;
    DOJANG_WIRE_CALLS(DOJANG_FUZZ_REQUEST)
#undef DOJANG_FUZZ_REQUEST
    default:
      break;
  }
}

template <class Request>
constexpr bool kStartsWithSession = requires(Request r) { r.session; };

// Whether a call's request starts with a session handle (every request with one has it first).
bool startsWithSession(std::uint16_t id) {
  switch (id) {
#define DOJANG_FUZZ_SESSION(number, name, request, reply) \
  case number:                                            \
    return kStartsWithSession<wire::request>;
    DOJANG_WIRE_CALLS(DOJANG_FUZZ_SESSION)
#undef DOJANG_FUZZ_SESSION
    default:
      return false;
  }
}

template <class Reply>
void checkReply(std::span<const std::uint8_t> body, std::uint64_t rv) {
  if (rv != CKR_OK) {
    if (!body.empty()) {
      violated("failed reply carries fields\n");
    }
    return;
  }
  Reply reply{};
  try {
    wire::Decoder decoder(body);
    decoder.read(reply);
    decoder.expectEnd();
  } catch (const wire::MalformedFrame&) {
    violated("daemon sent a reply its own decoder refuses\n");
  }
}

void checkReplyFrame(std::uint16_t id, const wire::Bytes& frame) {
  if (frame.size() < wire::kFrameHeaderBytes + 8) {
    violated("reply frame too short\n");
  }
  std::span<const std::uint8_t> payload(frame.data() + wire::kFrameHeaderBytes, frame.size() - wire::kFrameHeaderBytes);
  wire::Decoder decoder(payload.first(8));
  std::uint64_t rv = 0;
  decoder.read(rv);
  const auto body = payload.subspan(8);
  switch (id) {
#define DOJANG_FUZZ_REPLY(number, name, request, reply) \
  case number:                                          \
    checkReply<wire::reply>(body, rv);                  \
    return;
    DOJANG_WIRE_CALLS(DOJANG_FUZZ_REPLY)
#undef DOJANG_FUZZ_REPLY
    default:
      if (rv == CKR_OK || !body.empty()) {
        violated("unknown call answered\n");
      }
  }
}

// A daemon over one fake token, and one client that is logged in with two sessions.
class Harness final {
 public:
  Harness() {
    auto driverState = std::make_shared<dojang::test::FakeDriverState>();
    auto token = driverState->addSlot("0");
    // Object ids 100..104, as the seed corpus expects.
    (void)token->addPrivateKey(CKK_EC, "ec");    // 100
    (void)token->addPublicKey(CKK_EC, "ec");     // 101
    (void)token->addPrivateKey(CKK_RSA, "rsa");  // 102
    (void)token->addPublicKey(CKK_RSA, "rsa");   // 103
    (void)token->add({{CKA_CLASS, dojang::test::fakeUlongBytes(CKO_DATA)},
                      {CKA_TOKEN, dojang::test::fakeBoolBytes(true)},
                      {CKA_LABEL, {'d', 'a', 't', 'a'}}});  // 104
    std::vector<std::unique_ptr<dojang::token::Driver>> drivers;
    drivers.push_back(std::make_unique<dojang::test::FakeDriver>(driverState));
    m_slots = std::make_unique<core::SlotTable>(std::move(drivers));
    m_slots->rescan();
    // No waiting: C_WaitForSlotEvent without CKF_DONT_BLOCK must return at once here.
    m_slots->stopMonitoring();
    m_service = std::make_unique<core::Service>(*m_slots, std::vector<wire::BackendStatus>{});
    m_service->setStopping();

    wire::HelloRequest hello;
    hello.clientId.assign(16, 0x42);
    hello.program = "fuzz";
    m_context.client = m_service->attach(hello, core::PeerProcess{});
    m_context.peerGone = [] { return true; };
    for (CK_FLAGS flags : {CKF_SERIAL_SESSION | CKF_RW_SESSION, CKF_SERIAL_SESSION}) {
      wire::OpenSessionReply opened;
      m_service->OpenSession(m_context, {1, flags}, opened);
      m_sessions.push_back(opened.session);
    }
    wire::Empty none;
    m_service->Login(m_context, {m_sessions[0], CKU_USER, true, {'1', '2', '3', '4'}}, none);
  }
  Harness(const Harness&) = delete;
  Harness& operator=(const Harness&) = delete;
  ~Harness() { m_service->detach(m_context.client); }

  void run(std::span<const std::uint8_t> payload) {
    wire::Bytes request(payload.begin(), payload.end());
    std::uint16_t id = 0;
    if (request.size() >= 2) {
      id = static_cast<std::uint16_t>(request[0] | (request[1] << 8));
    }
    if (request.size() >= 10 && startsWithSession(id)) {
      std::uint64_t session = 0;
      for (std::size_t i = 0; i < 8; ++i) {
        session |= static_cast<std::uint64_t>(request[2 + i]) << (8 * i);
      }
      if (session < m_sessions.size()) {
        const auto handle = m_sessions[session];
        for (std::size_t i = 0; i < 8; ++i) {
          request[2 + i] = static_cast<std::uint8_t>(handle >> (8 * i));
        }
      }
    }
    wire::Bytes frame;
    core::dispatch(*m_service, m_context, request, frame);
    if (request.size() >= 2) {
      checkReplyFrame(id, frame);
    }
    if (kTrace) {
      std::uint64_t rv = 0;
      for (std::size_t i = 0; i < 8 && wire::kFrameHeaderBytes + i < frame.size(); ++i) {
        rv |= static_cast<std::uint64_t>(frame[wire::kFrameHeaderBytes + i]) << (8 * i);
      }
      std::printf("%s -> 0x%llx\n", wire::callName(id), static_cast<unsigned long long>(rv));
    }
  }

 private:
  std::unique_ptr<core::SlotTable> m_slots;
  std::unique_ptr<core::Service> m_service;
  core::CallContext m_context;
  std::vector<std::uint64_t> m_sessions;
};

std::vector<std::span<const std::uint8_t>> splitPayloads(std::span<const std::uint8_t> input) {
  std::vector<std::span<const std::uint8_t>> payloads;
  std::size_t start = 0;
  for (std::size_t i = 0; i + sizeof kSeparator <= input.size() && payloads.size() + 1 < kMaxPayloads;) {
    if (std::memcmp(input.data() + i, kSeparator, sizeof kSeparator) == 0) {
      payloads.push_back(input.subspan(start, i - start));
      i += sizeof kSeparator;
      start = i;
    } else {
      ++i;
    }
  }
  payloads.push_back(input.subspan(start));
  return payloads;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> input(data, size);
  const auto payloads = splitPayloads(input);
  for (const auto& payload : payloads) {
    decodeAsEveryType(payload);
  }
  Harness harness;
  for (const auto& payload : payloads) {
    harness.run(payload);
  }
  return 0;
}
