// The wire protocol alone: every message of DOJANG_WIRE_CALLS round-trips, the decoder refuses
// everything wire_limits.h forbids, and both transports frame, split and close correctly.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <algorithm>
#include <chrono>
#include <cstring>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "src/common/cryptoki/cryptoki.h"
#include "src/common/wire/calls.h"
#include "src/common/wire/codec.h"
#include "src/common/wire/transport.h"
#include "src/common/wire/wire_limits.h"

namespace wire = dojang::wire;

namespace {

// ---- generic filling and comparing of wire structs ----

// Fills every field with a value that differs from its default and depends on `seed`, so two
// fields of the same type rarely hold the same value and a swapped field would be noticed.
class Filler {
 public:
  explicit Filler(std::uint64_t seed) : m_next(seed * 7919 + 1) {}

  void fill(bool& value) { value = true; }
  void fill(std::uint8_t& value) { value = static_cast<std::uint8_t>(1 + next() % 200); }
  void fill(std::uint16_t& value) { value = static_cast<std::uint16_t>(1 + next() % 60000); }
  void fill(std::uint32_t& value) { value = static_cast<std::uint32_t>(0x01000000u + next()); }
  void fill(std::uint64_t& value) { value = 0x0100000000000000ull + next(); }
  // Negative, so that the sign survives the round trip (the wire has i32 counts with -1 = unknown).
  void fill(std::int32_t& value) { value = -static_cast<std::int32_t>(1 + next() % 1000000); }
  template <class E>
    requires std::is_enum_v<E>
  void fill(E& value) {
    value = static_cast<E>(1 + next() % 2);  // 1 or 2: valid for every enum of the wire
  }
  void fill(std::string& value) { value = "text-" + std::to_string(next()); }
  void fill(wire::Bytes& value) {
    value.clear();
    const auto size = 1 + next() % 9;
    for (std::uint64_t i = 0; i < size; ++i) {
      value.push_back(static_cast<std::uint8_t>(next()));
    }
  }
  template <class T>
  void fill(std::vector<T>& values) {
    values.resize(2);
    for (auto& value : values) {
      fill(value);
    }
  }
  template <wire::WireStruct T>
  void fill(T& value) {
    std::apply([&](auto&... field) { (fill(field), ...); }, value.fields());
  }

 private:
  std::uint64_t next() { return m_next++; }
  std::uint64_t m_next;
};

template <class T>
bool sameValue(const T& a, const T& b) {
  if constexpr (wire::WireStruct<T>) {
    return std::apply(
        [&](const auto&... left) {
          return std::apply([&](const auto&... right) { return (sameValue(left, right) && ...); }, b.fields());
        },
        a.fields());
  } else if constexpr (requires { a.size(); a.begin(); typename T::value_type; } &&
                       !std::is_same_v<T, std::string> && !std::is_same_v<T, wire::Bytes>) {
    if (a.size() != b.size()) {
      return false;
    }
    for (std::size_t i = 0; i < a.size(); ++i) {
      if (!sameValue(a[i], b[i])) {
        return false;
      }
    }
    return true;
  } else {
    return a == b;
  }
}

template <class T>
wire::Bytes encode(const T& value) {
  wire::Bytes out;
  wire::Encoder encoder(out);
  encoder.write(value);
  return out;
}

template <class T>
T decode(std::span<const std::uint8_t> bytes) {
  T value{};
  wire::Decoder decoder(bytes);
  decoder.read(value);
  decoder.expectEnd();
  return value;
}

template <class T>
constexpr bool hasFields() {
  return std::tuple_size_v<decltype(std::declval<const T&>().fields())> > 0;
}

// Round trip, re-encoding identity, non-default values, and every strict prefix refused.
template <class T>
void checkMessage(const char* what, std::uint64_t seed) {
  INFO(what);
  T original{};
  Filler(seed).fill(original);
  const auto bytes = encode(original);
  CHECK(wire::Sizer::size(original) == bytes.size());  // frames are sized before they are written
  const T copy = decode<T>(bytes);
  CHECK(sameValue(original, copy));
  CHECK(encode(copy) == bytes);
  if constexpr (hasFields<T>()) {
    CHECK(encode(T{}) != bytes);  // the filler really changed something
  }
  for (std::size_t length = 0; length < bytes.size(); ++length) {
    INFO("prefix of " << length << " of " << bytes.size() << " bytes");
    CHECK_THROWS_AS(decode<T>(std::span(bytes.data(), length)), wire::MalformedFrame);
  }
  auto longer = bytes;
  longer.push_back(0);
  CHECK_THROWS_AS(decode<T>(longer), wire::MalformedFrame);
}

wire::Bytes le32(std::uint32_t value) {
  return {static_cast<std::uint8_t>(value), static_cast<std::uint8_t>(value >> 8),
          static_cast<std::uint8_t>(value >> 16), static_cast<std::uint8_t>(value >> 24)};
}

// ---- socketpair helpers ----

struct SocketPair {
  int ours = -1;    // written and read raw by the test
  int theirs = -1;  // handed to a SocketTransport
  SocketPair() {
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
    ours = fds[0];
    theirs = fds[1];
  }
  ~SocketPair() {
    if (ours >= 0) {
      ::close(ours);
    }
  }
  SocketPair(const SocketPair&) = delete;
  SocketPair& operator=(const SocketPair&) = delete;
  void closeOurs() {
    ::close(ours);
    ours = -1;
  }
  void write(const wire::Bytes& bytes) const {
    std::size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = ::write(ours, bytes.data() + done, bytes.size() - done);
      REQUIRE(n > 0);
      done += static_cast<std::size_t>(n);
    }
  }
  wire::Bytes read(std::size_t size) const {
    wire::Bytes out(size);
    std::size_t done = 0;
    while (done < size) {
      const ssize_t n = ::read(ours, out.data() + done, size - done);
      REQUIRE(n > 0);
      done += static_cast<std::size_t>(n);
    }
    return out;
  }
};

wire::Bytes framed(const wire::Bytes& payload) {
  auto out = le32(static_cast<std::uint32_t>(payload.size()));
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

wire::Bytes outgoing(const wire::Bytes& payload) {
  wire::Bytes frame(wire::kFrameHeaderBytes, 0);
  frame.insert(frame.end(), payload.begin(), payload.end());
  return frame;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Messages

TEST_CASE("every request and reply of the call table round-trips with non-default values", "[wire][codec]") {
#define DOJANG_TEST_CALL(id, name, request, reply)           \
  checkMessage<wire::request>(#name " request " #request, id); \
  checkMessage<wire::reply>(#name " reply " #reply, 1000 + id);
  DOJANG_WIRE_CALLS(DOJANG_TEST_CALL)
#undef DOJANG_TEST_CALL
}

TEST_CASE("request and reply frames carry the call id and the return value", "[wire][codec]") {
  wire::LoginRequest login;
  login.session = 42;
  login.userType = CKU_USER;
  login.pinGiven = true;
  login.pin = {'1', '2', '3', '4'};
  wire::Bytes frame;
  wire::encodeRequest<wire::CallId::Login>(login, frame);
  REQUIRE(frame.size() > wire::kFrameHeaderBytes + 2);
  wire::Decoder decoder{std::span<const std::uint8_t>(frame).subspan(wire::kFrameHeaderBytes)};
  std::uint16_t id = 0;
  decoder.read(id);
  CHECK(id == static_cast<std::uint16_t>(wire::CallId::Login));
  wire::LoginRequest back;
  decoder.read(back);
  decoder.expectEnd();
  CHECK(sameValue(back, login));

  SECTION("a reply with CKR_OK carries its fields") {
    wire::DataReply reply;
    reply.data = {1, 2, 3};
    wire::encodeReply(CKR_OK, &reply, frame);
    wire::Decoder replyDecoder{std::span<const std::uint8_t>(frame).subspan(wire::kFrameHeaderBytes)};
    std::uint64_t rv = 1;
    replyDecoder.read(rv);
    CHECK(rv == CKR_OK);
    wire::DataReply got;
    replyDecoder.read(got);
    replyDecoder.expectEnd();
    CHECK(got.data == reply.data);
  }
  SECTION("a failed reply is the return value alone") {
    wire::DataReply reply;
    reply.data = {1, 2, 3};
    wire::encodeReply(CKR_PIN_INCORRECT, &reply, frame);
    CHECK(frame.size() == wire::kFrameHeaderBytes + 8);
    wire::Decoder replyDecoder{std::span<const std::uint8_t>(frame).subspan(wire::kFrameHeaderBytes)};
    std::uint64_t rv = 0;
    replyDecoder.read(rv);
    replyDecoder.expectEnd();
    CHECK(rv == CKR_PIN_INCORRECT);
  }
}

TEST_CASE("integers are little-endian and fixed width", "[wire][codec]") {
  wire::Bytes out;
  wire::Encoder encoder(out);
  encoder.write(std::uint16_t{0x0102});
  encoder.write(std::uint32_t{0x03040506});
  encoder.write(std::uint64_t{0x0708090a0b0c0d0e});
  encoder.write(true);
  encoder.write(std::string("ab"));
  CHECK(out == wire::Bytes{0x02, 0x01, 0x06, 0x05, 0x04, 0x03, 0x0e, 0x0d, 0x0c, 0x0b, 0x0a, 0x09,
                           0x08, 0x07, 0x01, 0x02, 0x00, 0x00, 0x00, 'a', 'b'});
}

TEST_CASE("call names come from the table", "[wire]") {
  CHECK(std::string(wire::callName(1)) == "Hello");
  CHECK(std::string(wire::callName(32)) == "Sign");
  CHECK(std::string(wire::callName(50)) == "DaemonStatus");
  CHECK(std::string(wire::callName(9999)) == "unknown");
  CHECK(std::string(wire::Call<wire::CallId::CheckOperation>::kName) == "CheckOperation");
}

// ---------------------------------------------------------------------------------------------
// Decoder limits

TEST_CASE("the decoder refuses truncated fields", "[wire][limits]") {
  CHECK_THROWS_AS(decode<std::uint64_t>(wire::Bytes{1, 2, 3}), wire::MalformedFrame);
  CHECK_THROWS_AS(decode<wire::Bytes>(wire::Bytes{5, 0, 0, 0, 1, 2}), wire::MalformedFrame);
  CHECK_THROWS_AS(decode<std::string>(wire::Bytes{3, 0}), wire::MalformedFrame);
  CHECK_THROWS_AS(decode<wire::SlotRequest>(wire::Bytes{}), wire::MalformedFrame);
}

TEST_CASE("the decoder refuses list counts over the limit or over the bytes left", "[wire][limits]") {
  SECTION("over kMaxListCount, even when the bytes are there") {
    auto bytes = le32(wire::kMaxListCount + 1);
    bytes.resize(bytes.size() + (wire::kMaxListCount + 1) * std::size_t{8}, 0);
    CHECK_THROWS_AS(decode<wire::GetSlotListReply>(bytes), wire::MalformedFrame);
  }
  SECTION("exactly kMaxListCount is fine") {
    auto bytes = le32(wire::kMaxListCount);
    bytes.resize(bytes.size() + wire::kMaxListCount * std::size_t{8}, 0);
    CHECK(decode<wire::GetSlotListReply>(bytes).slots.size() == wire::kMaxListCount);
  }
  SECTION("more elements than bytes left") {
    auto bytes = le32(10);
    bytes.resize(bytes.size() + 5, 0);
    CHECK_THROWS_AS(decode<wire::GetSlotListReply>(bytes), wire::MalformedFrame);
  }
  SECTION("a huge count in a tiny frame costs nothing") {
    CHECK_THROWS_AS(decode<wire::FindObjectsRequest>(wire::Bytes{1, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff}),
                    wire::MalformedFrame);
  }
  SECTION("nested lists are checked too") {
    wire::GetMechanismListReply reply;
    reply.mechanisms.resize(2);
    auto bytes = encode(reply);
    bytes[0] = 200;  // 200 mechanisms of 32 bytes each promised, 64 bytes there
    CHECK_THROWS_AS(decode<wire::GetMechanismListReply>(bytes), wire::MalformedFrame);
  }
}

TEST_CASE("the decoder refuses byte strings over kMaxDataBytes", "[wire][limits]") {
  auto bytes = le32(static_cast<std::uint32_t>(wire::kMaxDataBytes + 1));
  bytes.resize(bytes.size() + wire::kMaxDataBytes + 1, 0x55);
  CHECK_THROWS_AS(decode<wire::Bytes>(bytes), wire::MalformedFrame);

  auto atLimit = le32(static_cast<std::uint32_t>(wire::kMaxDataBytes));
  atLimit.resize(atLimit.size() + wire::kMaxDataBytes, 0x55);
  CHECK(decode<wire::Bytes>(atLimit).size() == wire::kMaxDataBytes);

  SECTION("inside a request") {
    auto request = encode(wire::DigestRequest{});
    request.resize(request.size() - 4);  // drop the empty data's length
    auto huge = le32(0xffffffffu);
    request.insert(request.end(), huge.begin(), huge.end());
    CHECK_THROWS_AS(decode<wire::DigestRequest>(request), wire::MalformedFrame);
  }
}

TEST_CASE("the decoder refuses strings over kMaxStringBytes", "[wire][limits]") {
  auto bytes = le32(static_cast<std::uint32_t>(wire::kMaxStringBytes + 1));
  bytes.resize(bytes.size() + wire::kMaxStringBytes + 1, 'x');
  CHECK_THROWS_AS(decode<std::string>(bytes), wire::MalformedFrame);

  auto atLimit = le32(static_cast<std::uint32_t>(wire::kMaxStringBytes));
  atLimit.resize(atLimit.size() + wire::kMaxStringBytes, 'x');
  CHECK(decode<std::string>(atLimit).size() == wire::kMaxStringBytes);

  SECTION("the program name of a Hello") {
    wire::HelloRequest hello;
    hello.clientId.resize(16);
    hello.program = std::string(wire::kMaxStringBytes + 1, 'p');
    CHECK_THROWS_AS(decode<wire::HelloRequest>(encode(hello)), wire::MalformedFrame);
  }
}

TEST_CASE("the decoder refuses booleans other than 0 and 1", "[wire][limits]") {
  CHECK_FALSE(decode<wire::GetSlotListRequest>(wire::Bytes{0}).tokenPresent);
  CHECK(decode<wire::GetSlotListRequest>(wire::Bytes{1}).tokenPresent);
  for (std::uint8_t byte : {2, 0x80, 0xff}) {
    CHECK_THROWS_AS(decode<wire::GetSlotListRequest>(wire::Bytes{byte}), wire::MalformedFrame);
  }
  wire::LoginRequest login;
  auto bytes = encode(login);
  bytes[16] = 2;  // pinGiven, after session and userType
  CHECK_THROWS_AS(decode<wire::LoginRequest>(bytes), wire::MalformedFrame);
}

TEST_CASE("the decoder refuses trailing bytes", "[wire][limits]") {
  CHECK_THROWS_AS(decode<wire::Empty>(wire::Bytes{0}), wire::MalformedFrame);
  auto bytes = encode(wire::SlotRequest{7});
  bytes.push_back(0);
  CHECK_THROWS_AS(decode<wire::SlotRequest>(bytes), wire::MalformedFrame);
}

// ---------------------------------------------------------------------------------------------
// Socket transport

TEST_CASE("SocketTransport frames what it sends", "[wire][socket]") {
  SocketPair pair;
  wire::SocketTransport transport(pair.theirs);
  auto frame = outgoing({9, 8, 7});
  transport.send(frame);
  CHECK(pair.read(7) == wire::Bytes{3, 0, 0, 0, 9, 8, 7});
}

TEST_CASE("SocketTransport reassembles frames split across writes", "[wire][socket]") {
  SocketPair pair;
  wire::SocketTransport transport(pair.theirs);
  const wire::Bytes payload{1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  const auto bytes = framed(payload);
  std::thread writer([&] {
    for (auto byte : bytes) {
      pair.write({byte});
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });
  wire::Bytes got;
  transport.receive(got);
  writer.join();
  CHECK(got == payload);
}

TEST_CASE("SocketTransport splits frames that arrive in one write", "[wire][socket]") {
  SocketPair pair;
  wire::SocketTransport transport(pair.theirs);
  auto bytes = framed({1});
  const auto second = framed({});
  const auto third = framed({2, 3});
  bytes.insert(bytes.end(), second.begin(), second.end());
  bytes.insert(bytes.end(), third.begin(), third.end());
  const auto fourthHead = framed({4, 5, 6});
  bytes.insert(bytes.end(), fourthHead.begin(), fourthHead.begin() + 5);  // half of a fourth frame
  pair.write(bytes);
  wire::Bytes got;
  transport.receive(got);
  CHECK(got == wire::Bytes{1});
  transport.receive(got);
  CHECK(got.empty());
  transport.receive(got);
  CHECK(got == wire::Bytes{2, 3});
  pair.write(wire::Bytes(fourthHead.begin() + 5, fourthHead.end()));
  transport.receive(got);
  CHECK(got == wire::Bytes{4, 5, 6});
}

TEST_CASE("SocketTransport carries large frames both ways", "[wire][socket]") {
  SocketPair pair;
  wire::SocketTransport left(pair.ours);
  pair.ours = -1;  // the transport owns it now
  wire::SocketTransport right(pair.theirs);
  wire::Bytes payload(wire::kMaxFrameBytes);
  for (std::size_t i = 0; i < payload.size(); ++i) {
    payload[i] = static_cast<std::uint8_t>(i * 7);
  }
  auto received = std::async(std::launch::async, [&] {
    wire::Bytes got;
    right.receive(got);
    return got;
  });
  auto frame = outgoing(payload);
  left.send(frame);
  CHECK(received.get() == payload);

  auto tooBig = outgoing(wire::Bytes(wire::kMaxFrameBytes + 1));
  CHECK_THROWS_AS(left.send(tooBig), wire::MalformedFrame);
}

TEST_CASE("SocketTransport refuses a length prefix over kMaxFrameBytes", "[wire][socket][limits]") {
  SocketPair pair;
  wire::SocketTransport transport(pair.theirs);
  pair.write(le32(static_cast<std::uint32_t>(wire::kMaxFrameBytes + 1)));
  wire::Bytes got;
  CHECK_THROWS_AS(transport.receive(got), wire::MalformedFrame);

  SocketPair other;
  wire::SocketTransport second(other.theirs);
  other.write(le32(0xffffffffu));
  CHECK_THROWS_AS(second.receive(got), wire::MalformedFrame);
}

TEST_CASE("SocketTransport grows the payload as its bytes arrive, not from the length prefix", "[wire][socket][limits]") {
  SocketPair pair;
  wire::SocketTransport transport(pair.theirs);
  // 4 MiB announced, 10 bytes sent: what the receiver holds must follow the 10 bytes.
  auto bytes = le32(static_cast<std::uint32_t>(wire::kMaxFrameBytes));
  bytes.insert(bytes.end(), {1, 2, 3, 4, 5, 6, 7, 8, 9, 10});
  pair.write(bytes);
  pair.closeOurs();
  wire::Bytes got;
  CHECK_THROWS_AS(transport.receive(got), wire::TransportClosed);
  CHECK(got.capacity() <= 64 * 1024);
}

TEST_CASE("SocketTransport assembles a large frame sent in small pieces", "[wire][socket]") {
  SocketPair pair;
  wire::SocketTransport transport(pair.theirs);
  wire::Bytes payload(1u << 20);
  for (std::size_t i = 0; i < payload.size(); ++i) {
    payload[i] = static_cast<std::uint8_t>(i * 13 + (i >> 11));
  }
  const auto bytes = framed(payload);
  std::thread writer([&] {
    for (std::size_t at = 0; at < bytes.size(); at += 1000) {
      pair.write(wire::Bytes(bytes.begin() + static_cast<std::ptrdiff_t>(at),
                             bytes.begin() + static_cast<std::ptrdiff_t>(std::min(at + 1000, bytes.size()))));
    }
  });
  wire::Bytes got;
  transport.receive(got);
  writer.join();
  CHECK(got == payload);
}

TEST_CASE("a transport's incoming frame limit can be lowered and raised again", "[wire][limits]") {
  SECTION("socket") {
    SocketPair pair;
    wire::SocketTransport transport(pair.theirs);
    transport.setMaxIncomingFrameBytes(wire::kMaxHelloFrameBytes);
    pair.write(framed(wire::Bytes(wire::kMaxHelloFrameBytes, 0x11)));
    wire::Bytes got;
    transport.receive(got);
    CHECK(got.size() == wire::kMaxHelloFrameBytes);
    pair.write(le32(static_cast<std::uint32_t>(wire::kMaxHelloFrameBytes + 1)));
    CHECK_THROWS_AS(transport.receive(got), wire::MalformedFrame);

    SocketPair other;
    wire::SocketTransport raised(other.theirs);
    raised.setMaxIncomingFrameBytes(wire::kMaxHelloFrameBytes);
    raised.setMaxIncomingFrameBytes(wire::kMaxFrameBytes);
    other.write(framed(wire::Bytes(wire::kMaxHelloFrameBytes + 1, 0x22)));
    raised.receive(got);
    CHECK(got.size() == wire::kMaxHelloFrameBytes + 1);
  }
  SECTION("memory") {
    auto [a, b] = wire::makeMemoryTransportPair();
    b->setMaxIncomingFrameBytes(4);
    auto small = outgoing({1, 2, 3, 4});
    auto large = outgoing({1, 2, 3, 4, 5});
    a->send(small);
    a->send(large);
    wire::Bytes got;
    b->receive(got);
    CHECK(got == wire::Bytes{1, 2, 3, 4});
    CHECK_THROWS_AS(b->receive(got), wire::MalformedFrame);
  }
}

TEST_CASE("SocketTransport reports a closed peer as TransportClosed", "[wire][socket]") {
  wire::Bytes got;
  SECTION("before any byte") {
    SocketPair pair;
    wire::SocketTransport transport(pair.theirs);
    pair.closeOurs();
    CHECK_THROWS_AS(transport.receive(got), wire::TransportClosed);
  }
  SECTION("inside the length prefix") {
    SocketPair pair;
    wire::SocketTransport transport(pair.theirs);
    pair.write({5, 0});
    pair.closeOurs();
    CHECK_THROWS_AS(transport.receive(got), wire::TransportClosed);
  }
  SECTION("inside the payload") {
    SocketPair pair;
    wire::SocketTransport transport(pair.theirs);
    pair.write({5, 0, 0, 0, 1, 2});
    pair.closeOurs();
    CHECK_THROWS_AS(transport.receive(got), wire::TransportClosed);
  }
  SECTION("after a whole frame, the next receive") {
    SocketPair pair;
    wire::SocketTransport transport(pair.theirs);
    pair.write(framed({1}));
    pair.closeOurs();
    transport.receive(got);
    CHECK(got == wire::Bytes{1});
    CHECK_THROWS_AS(transport.receive(got), wire::TransportClosed);
  }
  SECTION("sending to a closed peer, without SIGPIPE") {
    SocketPair pair;
    wire::SocketTransport transport(pair.theirs);
    pair.closeOurs();
    auto frame = outgoing({1, 2, 3});
    CHECK_THROWS_AS(transport.send(frame), wire::TransportClosed);
  }
  SECTION("shutdown wakes a blocked receive") {
    SocketPair pair;
    wire::SocketTransport transport(pair.theirs);
    auto blocked = std::async(std::launch::async, [&] {
      wire::Bytes payload;
      transport.receive(payload);
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    transport.shutdown();
    CHECK_THROWS_AS(blocked.get(), wire::TransportClosed);
  }
}

// ---------------------------------------------------------------------------------------------
// Memory transport

TEST_CASE("the memory transport pair carries frames both ways in order", "[wire][memory]") {
  auto [a, b] = wire::makeMemoryTransportPair();
  auto first = outgoing({1, 2});
  auto second = outgoing({3});
  a->send(first);
  a->send(second);
  auto reply = outgoing({});
  b->send(reply);
  wire::Bytes got;
  b->receive(got);
  CHECK(got == wire::Bytes{1, 2});
  b->receive(got);
  CHECK(got == wire::Bytes{3});
  a->receive(got);
  CHECK(got.empty());

  auto tooBig = outgoing(wire::Bytes(wire::kMaxFrameBytes + 1));
  CHECK_THROWS_AS(a->send(tooBig), wire::MalformedFrame);
}

TEST_CASE("the memory transport reports closing like a socket", "[wire][memory]") {
  auto [a, b] = wire::makeMemoryTransportPair();
  wire::Bytes got;
  SECTION("frames sent before close are still delivered, then TransportClosed") {
    auto frame = outgoing({7});
    a->send(frame);
    a.reset();
    b->receive(got);
    CHECK(got == wire::Bytes{7});
    CHECK_THROWS_AS(b->receive(got), wire::TransportClosed);
    auto back = outgoing({1});
    CHECK_THROWS_AS(b->send(back), wire::TransportClosed);
  }
  SECTION("shutdown from another thread wakes a blocked receive") {
    auto blocked = std::async(std::launch::async, [&b = b] {
      wire::Bytes payload;
      b->receive(payload);
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    b->shutdown();
    CHECK_THROWS_AS(blocked.get(), wire::TransportClosed);
  }
  SECTION("the peer's shutdown wakes a blocked receive") {
    auto blocked = std::async(std::launch::async, [&b = b] {
      wire::Bytes payload;
      b->receive(payload);
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    a->shutdown();
    CHECK_THROWS_AS(blocked.get(), wire::TransportClosed);
  }
}

// ---------------------------------------------------------------------------------------------
// Versions, frame sizing, wiping, timeouts

TEST_CASE("protocol versions: the range, the answer both speak, and the calls of version 2", "[wire][versions]") {
  CHECK(wire::kMinProtocolVersion == 1);
  CHECK(wire::kProtocolVersion == 2);
  CHECK_FALSE(wire::speaksProtocol(0));
  CHECK(wire::speaksProtocol(1));
  CHECK(wire::speaksProtocol(2));
  CHECK_FALSE(wire::speaksProtocol(3));
  CHECK(wire::negotiatedProtocol(1) == 1);
  CHECK(wire::negotiatedProtocol(2) == 2);
  CHECK(wire::protocolOfCall(wire::CallId::Sign) == 1);
  CHECK(wire::protocolOfCall(wire::CallId::GetObjectSize) == 2);
  CHECK(wire::protocolOfCall(wire::CallId::CopyObject) == 2);
  // Hello must stay what a protocol 1 daemon decodes (it refuses trailing bytes).
  wire::HelloRequest hello;
  hello.clientId.assign(16, 1);
  hello.program = "p";
  CHECK(wire::Sizer::size(hello) == 4 + (4 + 16) + 4 + (4 + 1));
}

TEST_CASE("frames are allocated once, at their final size", "[wire][codec]") {
  wire::CreateObjectRequest request;
  request.session = 1;
  for (int i = 0; i < 8; ++i) {
    request.templ.push_back({static_cast<std::uint64_t>(i), wire::Bytes(1000 + static_cast<std::size_t>(i), 0x42)});
  }
  wire::Bytes frame;
  wire::encodeRequest<wire::CallId::CreateObject>(request, frame);
  CHECK(frame.capacity() == frame.size());
  const auto* buffer = frame.data();
  wire::encodeRequest<wire::CallId::CreateObject>(request, frame);
  CHECK(frame.data() == buffer);  // reused, not grown
  wire::DataReply reply{wire::Bytes(5000, 0x17)};
  wire::encodeReply(0, &reply, frame);
  CHECK(frame.size() == wire::kFrameHeaderBytes + 8 + 4 + 5000);
}

TEST_CASE("wipe clears a buffer's whole capacity and keeps its size", "[wire][codec]") {
  wire::Bytes bytes(64, 0x55);
  bytes.resize(8);
  wire::wipe(bytes);
  CHECK(bytes.size() == 8);
  const auto* raw = bytes.data();
  CHECK(std::all_of(raw, raw + 64, [](std::uint8_t b) { return b == 0; }));
  std::string text(100, 'k');
  text.resize(3);
  wire::wipe(text);
  CHECK(text.size() == 3);
  CHECK(std::all_of(text.data(), text.data() + text.capacity(), [](char c) { return c == 0; }));
}

TEST_CASE("SocketTransport gives up after its timeout", "[wire][socket][timeouts]") {
  SocketPair pair;
  wire::SocketTransport transport(pair.theirs);
  transport.setTimeout(std::chrono::milliseconds(200));
  wire::Bytes got;
  SECTION("nothing at all") {
    const auto start = std::chrono::steady_clock::now();
    CHECK_THROWS_AS(transport.receive(got), wire::TransportTimedOut);
    CHECK(std::chrono::steady_clock::now() - start >= std::chrono::milliseconds(150));
  }
  SECTION("half a frame") {
    pair.write({5, 0, 0, 0, 1});
    CHECK_THROWS_AS(transport.receive(got), wire::TransportTimedOut);
  }
  SECTION("a frame in time") {
    pair.write(framed({9}));
    transport.receive(got);
    CHECK(got == wire::Bytes{9});
  }
  SECTION("a peer that reads nothing") {
    auto frame = outgoing(wire::Bytes(wire::kMaxDataBytes, 1));
    CHECK_THROWS_AS(transport.send(frame), wire::TransportTimedOut);
  }
}

TEST_CASE("the memory transport gives up after its timeout", "[wire][memory][timeouts]") {
  auto [a, b] = wire::makeMemoryTransportPair();
  b->setTimeout(std::chrono::milliseconds(100));
  wire::Bytes got;
  CHECK_THROWS_AS(b->receive(got), wire::TransportTimedOut);
  auto frame = outgoing({4});
  a->send(frame);
  b->receive(got);
  CHECK(got == wire::Bytes{4});
}

TEST_CASE("connecting to a listener that accepts nothing times out", "[wire][socket][timeouts]") {
  char pattern[] = "/tmp/dojang-wire-test-XXXXXX";
  REQUIRE(::mkdtemp(pattern) != nullptr);
  const std::string path = std::string(pattern) + "/sock";
  const int listener = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  REQUIRE(::bind(listener, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0);
  REQUIRE(::listen(listener, 0) == 0);
  // Fill the backlog, as clients of a stopped daemon would.
  std::vector<std::unique_ptr<wire::SocketTransport>> queued;
  bool full = false;
  for (int i = 0; i < 16 && !full; ++i) {
    try {
      queued.push_back(wire::connectUnixSocket(path, std::chrono::milliseconds(100)));
    } catch (const wire::TransportTimedOut&) {
      full = true;
    }
  }
  CHECK(full);
  const auto start = std::chrono::steady_clock::now();
  CHECK_THROWS_AS(wire::connectUnixSocket(path, std::chrono::milliseconds(300)), wire::TransportTimedOut);
  CHECK(std::chrono::steady_clock::now() - start >= std::chrono::milliseconds(250));
  queued.clear();
  ::close(listener);
  ::unlink(path.c_str());
  ::rmdir(pattern);
}
