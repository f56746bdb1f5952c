// Protocol tier: the real PKCS#11 entry points of dojang-pkcs11.so talking over in-memory
// transports to the real daemon core (SlotTable, Service, Server::serveConnection) over a fresh
// SoftHSM token, all in one process. A second client, which one process cannot have through the
// module, is driven at wire level with its own Hello.
#include <catch2/catch.hpp>

#include <atomic>
#include <cstring>
#include <deque>
#include <functional>
#include <iostream>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "drivers/vendor_module/vendor_driver.h"
#include "pkcs11/frontend_testing.h"
#include "src/common/cryptoki/cryptoki.h"
#include "src/common/wire/codec.h"
#include "src/common/wire/transport.h"
#include "src/daemon/server.h"
#include "src/daemon/service.h"
#include "src/daemon/slot_table.h"
#include "tests/support/softhsm_token.h"

namespace core = dojang::daemon;
namespace test = dojang::test;
namespace wire = dojang::wire;

namespace {

using Bytes = std::vector<std::uint8_t>;

// ---- frames, counted ----

// Every frame a client sends, by call id, across all of its connections.
class FrameLog final {
 public:
  void record(std::uint16_t id) {
    std::lock_guard lock(m_mutex);
    m_ids.push_back(id);
  }
  [[nodiscard]] std::size_t count() {
    std::lock_guard lock(m_mutex);
    return m_ids.size();
  }
  // Names of the calls sent since `from`, for printing.
  [[nodiscard]] std::string namesSince(std::size_t from) {
    std::lock_guard lock(m_mutex);
    std::string out;
    for (std::size_t i = from; i < m_ids.size(); ++i) {
      out += (out.empty() ? "" : ", ") + std::string(wire::callName(m_ids[i]));
    }
    return out.empty() ? "none" : out;
  }

 private:
  std::mutex m_mutex;
  std::vector<std::uint16_t> m_ids;
};

// A transport decorator that logs each frame sent: one frame sent is one round trip.
class CountingTransport final : public wire::Transport {
 public:
  CountingTransport(std::unique_ptr<wire::Transport> inner, FrameLog& log) : m_inner(std::move(inner)), m_log(log) {}

  void send(wire::Bytes& frame) override {
    std::uint16_t id = 0;
    if (frame.size() >= wire::kFrameHeaderBytes + 2) {
      id = static_cast<std::uint16_t>(frame[wire::kFrameHeaderBytes] | (frame[wire::kFrameHeaderBytes + 1] << 8));
    }
    m_log.record(id);
    m_inner->send(frame);
  }
  void receive(wire::Bytes& payload) override { m_inner->receive(payload); }
  void shutdown() noexcept override { m_inner->shutdown(); }

 private:
  std::unique_ptr<wire::Transport> m_inner;
  FrameLog& m_log;
};

// ---- the daemon, in process ----

class InProcessDaemon final {
 public:
  InProcessDaemon() {
    std::vector<std::unique_ptr<dojang::token::Driver>> drivers;
    drivers.push_back(std::make_unique<dojang::vendor::VendorDriver>(test::SoftHsmToken::kModulePath));
    m_slots = std::make_unique<core::SlotTable>(std::move(drivers));
    m_slots->rescan();
    m_service = std::make_unique<core::Service>(*m_slots, std::vector<wire::BackendStatus>{});
  }
  InProcessDaemon(const InProcessDaemon&) = delete;
  InProcessDaemon& operator=(const InProcessDaemon&) = delete;
  ~InProcessDaemon() {
    std::lock_guard lock(m_mutex);
    for (auto& end : m_serverEnds) {
      end->shutdown();  // ends every connection a client left open
    }
    for (auto& thread : m_threads) {
      thread.join();
    }
  }

  // A new connection: the client's end is returned, the server's end is served on a thread.
  std::unique_ptr<wire::Transport> connect() {
    auto [client, server] = wire::makeMemoryTransportPair();
    std::shared_ptr<wire::Transport> serverEnd = std::move(server);
    std::lock_guard lock(m_mutex);
    m_serverEnds.push_back(serverEnd);
    m_threads.emplace_back([service = m_service.get(), serverEnd] {
      core::Server::serveConnection(*service, *serverEnd, [] { return false; });
    });
    return std::move(client);
  }

  [[nodiscard]] const test::SoftHsmToken& softhsm() const noexcept { return m_softhsm; }

 private:
  test::SoftHsmToken m_softhsm;  // first: SOFTHSM2_CONF must be set before the module loads
  std::unique_ptr<core::SlotTable> m_slots;
  std::unique_ptr<core::Service> m_service;
  std::mutex m_mutex;
  std::vector<std::shared_ptr<wire::Transport>> m_serverEnds;
  std::vector<std::thread> m_threads;
};

// ---- templates that own their storage ----

class Template final {
 public:
  Template& add(CK_ATTRIBUTE_TYPE type, Bytes value) {
    m_values.push_back(std::move(value));
    auto& stored = m_values.back();
    m_attributes.push_back({type, stored.empty() ? nullptr : stored.data(), static_cast<CK_ULONG>(stored.size())});
    return *this;
  }
  Template& flag(CK_ATTRIBUTE_TYPE type, bool value) {
    return add(type, Bytes{static_cast<std::uint8_t>(value ? CK_TRUE : CK_FALSE)});
  }
  Template& ulong(CK_ATTRIBUTE_TYPE type, CK_ULONG value) {
    Bytes bytes(sizeof value);
    std::memcpy(bytes.data(), &value, sizeof value);
    return add(type, std::move(bytes));
  }
  Template& text(CK_ATTRIBUTE_TYPE type, const std::string& value) { return add(type, Bytes(value.begin(), value.end())); }
  CK_ATTRIBUTE* data() noexcept { return m_attributes.data(); }
  [[nodiscard]] CK_ULONG size() const noexcept { return static_cast<CK_ULONG>(m_attributes.size()); }

 private:
  std::deque<Bytes> m_values;  // a deque keeps addresses stable as it grows
  std::vector<CK_ATTRIBUTE> m_attributes;
};

// DER of OID 1.2.840.10045.3.1.7 (prime256v1), as CKA_EC_PARAMS wants it.
const Bytes kP256Params = {0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07};
// SHA-256("abc"), FIPS 180-2 appendix B.1.
const Bytes kSha256Abc = {0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23,
                          0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad};

Bytes bytesOf(const std::string& text) { return Bytes(text.begin(), text.end()); }

struct KeyPair {
  CK_OBJECT_HANDLE publicKey = CK_INVALID_HANDLE;
  CK_OBJECT_HANDLE privateKey = CK_INVALID_HANDLE;
};

// ---- the module, initialised over the in-process daemon ----

class Module final {
 public:
  Module(InProcessDaemon& daemon, FrameLog& frames) : m_pin(daemon.softhsm().pin()) {
    dojang::frontend::setConnectorForTesting(
        [&daemon, &frames] { return std::make_unique<CountingTransport>(daemon.connect(), frames); });
    p11 = dojang::frontend::functionListForTesting();
    REQUIRE(p11->C_Initialize(nullptr) == CKR_OK);
    CK_ULONG count = 0;
    REQUIRE(p11->C_GetSlotList(CK_TRUE, nullptr, &count) == CKR_OK);
    REQUIRE(count >= 1);
    std::vector<CK_SLOT_ID> slots(count);
    REQUIRE(p11->C_GetSlotList(CK_TRUE, slots.data(), &count) == CKR_OK);
    slot = slots[0];
  }
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;
  ~Module() {
    p11->C_Finalize(nullptr);
    dojang::frontend::setConnectorForTesting(nullptr);
  }

  CK_SESSION_HANDLE openSession(bool readWrite = true) {
    CK_SESSION_HANDLE session = CK_INVALID_HANDLE;
    REQUIRE(p11->C_OpenSession(slot, CKF_SERIAL_SESSION | (readWrite ? CKF_RW_SESSION : 0), nullptr, nullptr,
                               &session) == CKR_OK);
    return session;
  }
  CK_RV login(CK_SESSION_HANDLE session, std::string pin = {}) {
    if (pin.empty()) {
      pin = m_pin;
    }
    Bytes bytes = bytesOf(pin);
    return p11->C_Login(session, CKU_USER, bytes.data(), static_cast<CK_ULONG>(bytes.size()));
  }
  CK_ULONG sessionState(CK_SESSION_HANDLE session) {
    CK_SESSION_INFO info{};
    REQUIRE(p11->C_GetSessionInfo(session, &info) == CKR_OK);
    return info.state;
  }

  KeyPair generateEc(CK_SESSION_HANDLE session, bool onToken = false, const std::string& label = "ec") {
    CK_MECHANISM mechanism{CKM_EC_KEY_PAIR_GEN, nullptr, 0};
    Template publicTemplate;
    publicTemplate.add(CKA_EC_PARAMS, kP256Params).flag(CKA_VERIFY, true).flag(CKA_TOKEN, onToken).text(CKA_LABEL, label);
    Template privateTemplate;
    privateTemplate.flag(CKA_SIGN, true).flag(CKA_TOKEN, onToken).text(CKA_LABEL, label);
    // Asks for an exportable, non-sensitive key; the daemon must override that.
    privateTemplate.flag(CKA_SENSITIVE, false).flag(CKA_EXTRACTABLE, true);
    KeyPair pair;
    REQUIRE(p11->C_GenerateKeyPair(session, &mechanism, publicTemplate.data(), publicTemplate.size(),
                                   privateTemplate.data(), privateTemplate.size(), &pair.publicKey,
                                   &pair.privateKey) == CKR_OK);
    return pair;
  }
  KeyPair generateRsa(CK_SESSION_HANDLE session) {
    CK_MECHANISM mechanism{CKM_RSA_PKCS_KEY_PAIR_GEN, nullptr, 0};
    Template publicTemplate;
    publicTemplate.ulong(CKA_MODULUS_BITS, 2048).add(CKA_PUBLIC_EXPONENT, {0x01, 0x00, 0x01}).flag(CKA_VERIFY, true);
    publicTemplate.flag(CKA_TOKEN, false);
    Template privateTemplate;
    privateTemplate.flag(CKA_SIGN, true).flag(CKA_TOKEN, false).text(CKA_LABEL, "rsa");
    KeyPair pair;
    REQUIRE(p11->C_GenerateKeyPair(session, &mechanism, publicTemplate.data(), publicTemplate.size(),
                                   privateTemplate.data(), privateTemplate.size(), &pair.publicKey,
                                   &pair.privateKey) == CKR_OK);
    return pair;
  }

  // C_SignInit, then C_Sign with the two-call convention.
  Bytes sign(CK_SESSION_HANDLE session, CK_MECHANISM mechanism, CK_OBJECT_HANDLE key, Bytes data) {
    REQUIRE(p11->C_SignInit(session, &mechanism, key) == CKR_OK);
    CK_ULONG length = 0;
    REQUIRE(p11->C_Sign(session, data.data(), static_cast<CK_ULONG>(data.size()), nullptr, &length) == CKR_OK);
    Bytes signature(length);
    REQUIRE(p11->C_Sign(session, data.data(), static_cast<CK_ULONG>(data.size()), signature.data(), &length) == CKR_OK);
    signature.resize(length);
    return signature;
  }
  CK_RV verify(CK_SESSION_HANDLE session, CK_MECHANISM mechanism, CK_OBJECT_HANDLE key, Bytes data, Bytes signature) {
    REQUIRE(p11->C_VerifyInit(session, &mechanism, key) == CKR_OK);
    return p11->C_Verify(session, data.data(), static_cast<CK_ULONG>(data.size()), signature.data(),
                         static_cast<CK_ULONG>(signature.size()));
  }
  std::vector<CK_OBJECT_HANDLE> find(CK_SESSION_HANDLE session, Template templ) {
    REQUIRE(p11->C_FindObjectsInit(session, templ.data(), templ.size()) == CKR_OK);
    std::vector<CK_OBJECT_HANDLE> found;
    CK_OBJECT_HANDLE batch[16];
    CK_ULONG count = 0;
    do {
      REQUIRE(p11->C_FindObjects(session, batch, 16, &count) == CKR_OK);
      found.insert(found.end(), batch, batch + count);
    } while (count > 0);
    REQUIRE(p11->C_FindObjectsFinal(session) == CKR_OK);
    return found;
  }

  CK_FUNCTION_LIST* p11 = nullptr;
  CK_SLOT_ID slot = 0;

 private:
  std::string m_pin;
};

// The usual setting: a daemon over a fresh token, the module connected to it.
struct Fixture {
  InProcessDaemon daemon;
  FrameLog frames;
  Module module{daemon, frames};
  CK_FUNCTION_LIST* p11 = module.p11;
};

// ---- a second client at wire level ----

class WireClient final {
 public:
  WireClient(InProcessDaemon& daemon, std::uint8_t idByte) : m_transport(daemon.connect()) {
    wire::HelloRequest hello;
    hello.clientId.assign(16, idByte);
    hello.pid = 4242;
    hello.program = "second-client";
    wire::HelloReply reply;
    REQUIRE(call<wire::CallId::Hello>(hello, reply) == CKR_OK);
  }

  template <wire::CallId id>
  CK_RV call(const typename wire::Call<id>::Request& request, typename wire::Call<id>::Reply& reply) {
    wire::encodeRequest<id>(request, m_frame);
    m_transport->send(m_frame);
    m_transport->receive(m_payload);
    wire::Decoder decoder(m_payload);
    std::uint64_t rv = 0;
    decoder.read(rv);
    if (rv == CKR_OK) {
      decoder.read(reply);
    }
    decoder.expectEnd();
    return static_cast<CK_RV>(rv);
  }
  template <wire::CallId id>
  CK_RV call(const typename wire::Call<id>::Request& request) {
    typename wire::Call<id>::Reply ignored;
    return call<id>(request, ignored);
  }

  std::uint64_t openSession(CK_SLOT_ID slot) {
    wire::OpenSessionReply reply;
    REQUIRE(call<wire::CallId::OpenSession>({slot, CKF_SERIAL_SESSION | CKF_RW_SESSION}, reply) == CKR_OK);
    return reply.session;
  }
  CK_RV login(std::uint64_t session, const std::string& pin, bool pinGiven = true) {
    return call<wire::CallId::Login>({session, CKU_USER, pinGiven, bytesOf(pin)});
  }
  CK_RV sign(std::uint64_t session, std::uint64_t key, Bytes* signature = nullptr) {
    wire::Mechanism ecdsa;
    ecdsa.type = CKM_ECDSA;
    wire::DataReply reply;
    const CK_RV rv = call<wire::CallId::Sign>({session, ecdsa, key, Bytes(32, 0x11)}, reply);
    if (signature != nullptr) {
      *signature = reply.data;
    }
    return rv;
  }
  CK_RV checkSign(std::uint64_t session, std::uint64_t key) {
    wire::Mechanism ecdsa;
    ecdsa.type = CKM_ECDSA;
    return call<wire::CallId::CheckOperation>({session, wire::Operation::Sign, ecdsa, key});
  }
  std::vector<std::uint64_t> findPrivateKeys(std::uint64_t session) {
    CK_ULONG privateKeyClass = CKO_PRIVATE_KEY;
    Bytes value(sizeof privateKeyClass);
    std::memcpy(value.data(), &privateKeyClass, sizeof privateKeyClass);
    wire::FindObjectsReply reply;
    REQUIRE(call<wire::CallId::FindObjects>({session, {{CKA_CLASS, value}}}, reply) == CKR_OK);
    return reply.objects;
  }

 private:
  std::unique_ptr<wire::Transport> m_transport;
  wire::Bytes m_frame;
  wire::Bytes m_payload;
};

// Every function dojang does not offer, called with harmless arguments.
std::vector<std::pair<std::string, std::function<CK_RV()>>> unsupportedFunctions(CK_FUNCTION_LIST* p11,
                                                                                  CK_SESSION_HANDLE s) {
  static CK_BYTE buffer[64];
  static CK_ULONG length = sizeof buffer;
  static CK_MECHANISM mechanism{CKM_AES_CBC, nullptr, 0};
  static CK_OBJECT_HANDLE handle = 0;
  return {
      {"C_InitToken", [=] { return p11->C_InitToken(1, buffer, 4, buffer); }},
      {"C_GetOperationState", [=] { return p11->C_GetOperationState(s, buffer, &length); }},
      {"C_SetOperationState", [=] { return p11->C_SetOperationState(s, buffer, 4, 0, 0); }},
      {"C_EncryptInit", [=] { return p11->C_EncryptInit(s, &mechanism, 1); }},
      {"C_Encrypt", [=] { return p11->C_Encrypt(s, buffer, 4, buffer, &length); }},
      {"C_EncryptUpdate", [=] { return p11->C_EncryptUpdate(s, buffer, 4, buffer, &length); }},
      {"C_EncryptFinal", [=] { return p11->C_EncryptFinal(s, buffer, &length); }},
      {"C_DecryptUpdate", [=] { return p11->C_DecryptUpdate(s, buffer, 4, buffer, &length); }},
      {"C_DecryptFinal", [=] { return p11->C_DecryptFinal(s, buffer, &length); }},
      {"C_DigestKey", [=] { return p11->C_DigestKey(s, 1); }},
      {"C_SignRecoverInit", [=] { return p11->C_SignRecoverInit(s, &mechanism, 1); }},
      {"C_SignRecover", [=] { return p11->C_SignRecover(s, buffer, 4, buffer, &length); }},
      {"C_VerifyRecoverInit", [=] { return p11->C_VerifyRecoverInit(s, &mechanism, 1); }},
      {"C_VerifyRecover", [=] { return p11->C_VerifyRecover(s, buffer, 4, buffer, &length); }},
      {"C_DigestEncryptUpdate", [=] { return p11->C_DigestEncryptUpdate(s, buffer, 4, buffer, &length); }},
      {"C_DecryptDigestUpdate", [=] { return p11->C_DecryptDigestUpdate(s, buffer, 4, buffer, &length); }},
      {"C_SignEncryptUpdate", [=] { return p11->C_SignEncryptUpdate(s, buffer, 4, buffer, &length); }},
      {"C_DecryptVerifyUpdate", [=] { return p11->C_DecryptVerifyUpdate(s, buffer, 4, buffer, &length); }},
      {"C_GenerateKey", [=] { return p11->C_GenerateKey(s, &mechanism, nullptr, 0, &handle); }},
      {"C_WrapKey", [=] { return p11->C_WrapKey(s, &mechanism, 1, 2, buffer, &length); }},
      {"C_UnwrapKey", [=] { return p11->C_UnwrapKey(s, &mechanism, 1, buffer, 4, nullptr, 0, &handle); }},
      {"C_DeriveKey", [=] { return p11->C_DeriveKey(s, &mechanism, 1, nullptr, 0, &handle); }},
  };
}

// Functions that need an initialised library but exist (or come with protocol 2).
std::vector<std::pair<std::string, std::function<CK_RV()>>> otherFunctions(CK_FUNCTION_LIST* p11, CK_SESSION_HANDLE s) {
  static CK_BYTE buffer[16];
  static CK_ULONG length = 0;
  static CK_OBJECT_HANDLE handle = 0;
  return {
      {"C_SeedRandom", [=] { return p11->C_SeedRandom(s, buffer, 4); }},
      {"C_GetFunctionStatus", [=] { return p11->C_GetFunctionStatus(s); }},
      {"C_CancelFunction", [=] { return p11->C_CancelFunction(s); }},
      {"C_GetObjectSize", [=] { return p11->C_GetObjectSize(s, 1, &length); }},
      {"C_CopyObject", [=] { return p11->C_CopyObject(s, 1, nullptr, 0, &handle); }},
  };
}

std::string trimmed(const CK_UTF8CHAR* field, std::size_t width) {
  std::string text(reinterpret_cast<const char*>(field), width);
  text.erase(text.find_last_not_of(' ') + 1);
  return text;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

TEST_CASE("before C_Initialize and after C_Finalize every function says CKR_CRYPTOKI_NOT_INITIALIZED",
          "[protocol][stubs]") {
  auto* p11 = dojang::frontend::functionListForTesting();
  auto checkAll = [p11](const char* when) {
    for (const auto& [name, call] : unsupportedFunctions(p11, 1)) {
      INFO(when << ": " << name);
      CHECK(call() == CKR_CRYPTOKI_NOT_INITIALIZED);
    }
    for (const auto& [name, call] : otherFunctions(p11, 1)) {
      INFO(when << ": " << name);
      CHECK(call() == CKR_CRYPTOKI_NOT_INITIALIZED);
    }
  };
  checkAll("before C_Initialize");
  {
    Fixture f;
    const auto session = f.module.openSession();
    for (const auto& [name, call] : unsupportedFunctions(f.p11, session)) {
      INFO("initialised: " << name);
      CHECK(call() == CKR_FUNCTION_NOT_SUPPORTED);
    }
    const CK_SESSION_HANDLE unknown = session + 1000;
    CK_BYTE seed[4] = {1, 2, 3, 4};
    CHECK(f.p11->C_SeedRandom(unknown, seed, 4) == CKR_SESSION_HANDLE_INVALID);
    CHECK(f.p11->C_SeedRandom(session, seed, 4) == CKR_RANDOM_SEED_NOT_SUPPORTED);
    CHECK(f.p11->C_GetFunctionStatus(unknown) == CKR_SESSION_HANDLE_INVALID);
    CHECK(f.p11->C_GetFunctionStatus(session) == CKR_FUNCTION_NOT_PARALLEL);
    CHECK(f.p11->C_CancelFunction(unknown) == CKR_SESSION_HANDLE_INVALID);
    CHECK(f.p11->C_CancelFunction(session) == CKR_FUNCTION_NOT_PARALLEL);
    REQUIRE(f.p11->C_Finalize(nullptr) == CKR_OK);
    checkAll("after C_Finalize");
  }
}

TEST_CASE("C_Initialize, slots, token info and mechanisms", "[protocol]") {
  Fixture f;
  CK_INFO info{};
  CHECK(f.p11->C_GetInfo(&info) == CKR_OK);
  CHECK(f.p11->C_Initialize(nullptr) == CKR_CRYPTOKI_ALREADY_INITIALIZED);

  SECTION("C_GetSlotList: NULL buffer, too small, then success") {
    CK_ULONG count = 0;
    REQUIRE(f.p11->C_GetSlotList(CK_FALSE, nullptr, &count) == CKR_OK);
    REQUIRE(count >= 1);
    const CK_ULONG needed = count;
    std::vector<CK_SLOT_ID> slots(needed + 2, 0xdead);
    count = 0;
    CHECK(f.p11->C_GetSlotList(CK_FALSE, slots.data(), &count) == CKR_BUFFER_TOO_SMALL);
    CHECK(count == needed);
    count = static_cast<CK_ULONG>(slots.size());
    REQUIRE(f.p11->C_GetSlotList(CK_FALSE, slots.data(), &count) == CKR_OK);
    CHECK(count == needed);
    CHECK(std::find(slots.begin(), slots.begin() + static_cast<std::ptrdiff_t>(count), f.module.slot) !=
          slots.begin() + static_cast<std::ptrdiff_t>(count));
    CHECK(f.p11->C_GetSlotList(CK_FALSE, nullptr, nullptr) == CKR_ARGUMENTS_BAD);
  }
  SECTION("C_GetSlotInfo and C_GetTokenInfo") {
    CK_SLOT_INFO slotInfo{};
    REQUIRE(f.p11->C_GetSlotInfo(f.module.slot, &slotInfo) == CKR_OK);
    CHECK((slotInfo.flags & CKF_TOKEN_PRESENT) != 0);
    CK_TOKEN_INFO tokenInfo{};
    REQUIRE(f.p11->C_GetTokenInfo(f.module.slot, &tokenInfo) == CKR_OK);
    CHECK(trimmed(tokenInfo.label, sizeof tokenInfo.label) == f.daemon.softhsm().label());
    CHECK((tokenInfo.flags & CKF_TOKEN_INITIALIZED) != 0);
    CHECK(f.p11->C_GetTokenInfo(9999, &tokenInfo) == CKR_SLOT_ID_INVALID);
  }
  SECTION("C_GetMechanismList: two calls, served mechanisms only") {
    CK_ULONG count = 0;
    REQUIRE(f.p11->C_GetMechanismList(f.module.slot, nullptr, &count) == CKR_OK);
    REQUIRE(count > 0);
    std::vector<CK_MECHANISM_TYPE> mechanisms(count);
    CK_ULONG tooFew = 1;
    CHECK(f.p11->C_GetMechanismList(f.module.slot, mechanisms.data(), &tooFew) == CKR_BUFFER_TOO_SMALL);
    CHECK(tooFew == count);
    REQUIRE(f.p11->C_GetMechanismList(f.module.slot, mechanisms.data(), &count) == CKR_OK);
    const std::set<CK_MECHANISM_TYPE> offered(mechanisms.begin(), mechanisms.end());
    for (CK_MECHANISM_TYPE wanted : {CKM_ECDSA, CKM_SHA256_RSA_PKCS, CKM_SHA256_RSA_PKCS_PSS, CKM_SHA256,
                                     CKM_EC_KEY_PAIR_GEN, CKM_RSA_PKCS_KEY_PAIR_GEN}) {
      INFO("mechanism 0x" << std::hex << wanted);
      CHECK(offered.contains(wanted));
    }
    // SoftHSM offers these; dojang does not serve them.
    for (CK_MECHANISM_TYPE refused : {CKM_AES_CBC, CKM_MD5_RSA_PKCS, CKM_AES_KEY_GEN}) {
      INFO("mechanism 0x" << std::hex << refused);
      CHECK_FALSE(offered.contains(refused));
    }
    CK_MECHANISM_INFO mechanismInfo{};
    REQUIRE(f.p11->C_GetMechanismInfo(f.module.slot, CKM_ECDSA, &mechanismInfo) == CKR_OK);
    CHECK((mechanismInfo.flags & CKF_SIGN) != 0);
    CHECK(f.p11->C_GetMechanismInfo(f.module.slot, CKM_AES_CBC, &mechanismInfo) == CKR_MECHANISM_INVALID);
  }
}

TEST_CASE("login, EC P-256 key generation, ECDSA on a hash, verify", "[protocol][sign]") {
  Fixture f;
  const auto session = f.module.openSession();
  CHECK(f.module.login(session, "000000") == CKR_PIN_INCORRECT);
  CHECK(f.module.sessionState(session) == CKS_RW_PUBLIC_SESSION);
  REQUIRE(f.module.login(session) == CKR_OK);
  CHECK(f.module.sessionState(session) == CKS_RW_USER_FUNCTIONS);
  CHECK(f.module.login(session) == CKR_USER_ALREADY_LOGGED_IN);

  const auto keys = f.module.generateEc(session);
  CK_MECHANISM ecdsa{CKM_ECDSA, nullptr, 0};
  const Bytes hash = kSha256Abc;

  SECTION("C_Sign: NULL buffer, too small, then success") {
    REQUIRE(f.p11->C_SignInit(session, &ecdsa, keys.privateKey) == CKR_OK);
    Bytes data = hash;
    CK_ULONG length = 0;
    REQUIRE(f.p11->C_Sign(session, data.data(), static_cast<CK_ULONG>(data.size()), nullptr, &length) == CKR_OK);
    CHECK(length == 64);
    Bytes signature(length);
    CK_ULONG small = 10;
    CHECK(f.p11->C_Sign(session, data.data(), static_cast<CK_ULONG>(data.size()), signature.data(), &small) ==
          CKR_BUFFER_TOO_SMALL);
    CHECK(small == 64);
    REQUIRE(f.p11->C_Sign(session, data.data(), static_cast<CK_ULONG>(data.size()), signature.data(), &length) ==
            CKR_OK);
    CHECK(length == 64);
    // The operation is over once the signature was delivered.
    CHECK(f.p11->C_Sign(session, data.data(), static_cast<CK_ULONG>(data.size()), signature.data(), &length) ==
          CKR_OPERATION_NOT_INITIALIZED);
    CHECK(f.module.verify(session, ecdsa, keys.publicKey, hash, signature) == CKR_OK);
  }
  SECTION("C_Verify refuses a wrong signature") {
    auto signature = f.module.sign(session, ecdsa, keys.privateKey, hash);
    REQUIRE(signature.size() == 64);
    CHECK(f.module.verify(session, ecdsa, keys.publicKey, hash, signature) == CKR_OK);
    signature[5] ^= 0x01;
    CHECK(f.module.verify(session, ecdsa, keys.publicKey, hash, signature) == CKR_SIGNATURE_INVALID);
    auto otherHash = hash;
    otherHash[0] ^= 0x80;
    signature[5] ^= 0x01;
    CHECK(f.module.verify(session, ecdsa, keys.publicKey, otherHash, signature) == CKR_SIGNATURE_INVALID);
  }
  SECTION("C_SignUpdate/C_SignFinal: the module gathers the parts") {
    REQUIRE(f.p11->C_SignInit(session, &ecdsa, keys.privateKey) == CKR_OK);
    Bytes data = hash;
    REQUIRE(f.p11->C_SignUpdate(session, data.data(), 16) == CKR_OK);
    REQUIRE(f.p11->C_SignUpdate(session, data.data() + 16, 16) == CKR_OK);
    CK_ULONG length = 0;
    REQUIRE(f.p11->C_SignFinal(session, nullptr, &length) == CKR_OK);
    Bytes signature(length);
    REQUIRE(f.p11->C_SignFinal(session, signature.data(), &length) == CKR_OK);
    CHECK(f.module.verify(session, ecdsa, keys.publicKey, hash, signature) == CKR_OK);
  }
  SECTION("CKM_ECDSA_SHA256 over the message, when the token has it") {
    CK_MECHANISM ecdsaSha256{CKM_ECDSA_SHA256, nullptr, 0};
    CK_MECHANISM_INFO info{};
    if (f.p11->C_GetMechanismInfo(f.module.slot, CKM_ECDSA_SHA256, &info) != CKR_OK) {
      // SoftHSM 2.6 has raw CKM_ECDSA only.
      CHECK(f.p11->C_SignInit(session, &ecdsaSha256, keys.privateKey) == CKR_MECHANISM_INVALID);
      return;
    }
    REQUIRE(f.p11->C_SignInit(session, &ecdsaSha256, keys.privateKey) == CKR_OK);
    Bytes part1 = bytesOf("a");
    Bytes part2 = bytesOf("bc");
    REQUIRE(f.p11->C_SignUpdate(session, part1.data(), 1) == CKR_OK);
    REQUIRE(f.p11->C_SignUpdate(session, part2.data(), 2) == CKR_OK);
    CK_ULONG length = 0;
    REQUIRE(f.p11->C_SignFinal(session, nullptr, &length) == CKR_OK);
    Bytes signature(length);
    REQUIRE(f.p11->C_SignFinal(session, signature.data(), &length) == CKR_OK);
    CHECK(f.module.verify(session, ecdsa, keys.publicKey, hash, signature) == CKR_OK);
  }
}

TEST_CASE("RSA-2048: PKCS#1 v1.5 and PSS with SHA-256, single- and multi-part", "[protocol][sign]") {
  Fixture f;
  const auto session = f.module.openSession();
  REQUIRE(f.module.login(session) == CKR_OK);
  const auto keys = f.module.generateRsa(session);
  const Bytes message = bytesOf("the quick brown fox jumps over the lazy dog");

  CK_ATTRIBUTE modulus{CKA_MODULUS, nullptr, 0};
  REQUIRE(f.p11->C_GetAttributeValue(session, keys.publicKey, &modulus, 1) == CKR_OK);
  CHECK(modulus.ulValueLen == 256);

  CK_MECHANISM pkcs1{CKM_SHA256_RSA_PKCS, nullptr, 0};
  const auto signature = f.module.sign(session, pkcs1, keys.privateKey, message);
  CHECK(signature.size() == 256);
  CHECK(f.module.verify(session, pkcs1, keys.publicKey, message, signature) == CKR_OK);

  SECTION("multi-part signing gives the same deterministic signature") {
    REQUIRE(f.p11->C_SignInit(session, &pkcs1, keys.privateKey) == CKR_OK);
    Bytes data = message;
    for (std::size_t offset = 0; offset < data.size(); offset += 10) {
      const auto size = static_cast<CK_ULONG>(std::min<std::size_t>(10, data.size() - offset));
      REQUIRE(f.p11->C_SignUpdate(session, data.data() + offset, size) == CKR_OK);
    }
    Bytes multi(256);
    CK_ULONG length = 10;
    CHECK(f.p11->C_SignFinal(session, multi.data(), &length) == CKR_BUFFER_TOO_SMALL);
    CHECK(length == 256);
    REQUIRE(f.p11->C_SignFinal(session, multi.data(), &length) == CKR_OK);
    CHECK(multi == signature);

    REQUIRE(f.p11->C_VerifyInit(session, &pkcs1, keys.publicKey) == CKR_OK);
    REQUIRE(f.p11->C_VerifyUpdate(session, data.data(), 20) == CKR_OK);
    REQUIRE(f.p11->C_VerifyUpdate(session, data.data() + 20, static_cast<CK_ULONG>(data.size() - 20)) == CKR_OK);
    CHECK(f.p11->C_VerifyFinal(session, multi.data(), static_cast<CK_ULONG>(multi.size())) == CKR_OK);
  }
  SECTION("a single-part C_Sign after C_SignUpdate is refused") {
    REQUIRE(f.p11->C_SignInit(session, &pkcs1, keys.privateKey) == CKR_OK);
    Bytes data = message;
    REQUIRE(f.p11->C_SignUpdate(session, data.data(), 4) == CKR_OK);
    Bytes out(256);
    CK_ULONG length = 256;
    CHECK(f.p11->C_Sign(session, data.data(), static_cast<CK_ULONG>(data.size()), out.data(), &length) ==
          CKR_OPERATION_ACTIVE);
  }
  SECTION("PSS") {
    CK_RSA_PKCS_PSS_PARAMS params{CKM_SHA256, CKG_MGF1_SHA256, 32};
    CK_MECHANISM pss{CKM_SHA256_RSA_PKCS_PSS, &params, sizeof params};
    const auto first = f.module.sign(session, pss, keys.privateKey, message);
    const auto second = f.module.sign(session, pss, keys.privateKey, message);
    CHECK(first.size() == 256);
    CHECK(first != second);  // salted
    CHECK(f.module.verify(session, pss, keys.publicKey, message, first) == CKR_OK);
    CHECK(f.module.verify(session, pss, keys.publicKey, message, second) == CKR_OK);
    CHECK(f.module.verify(session, pss, keys.publicKey, bytesOf("another message"), first) == CKR_SIGNATURE_INVALID);
  }
}

TEST_CASE("C_SignInit refuses bad keys and mechanisms", "[protocol][sign]") {
  Fixture f;
  const auto session = f.module.openSession();
  REQUIRE(f.module.login(session) == CKR_OK);
  const auto keys = f.module.generateEc(session);
  CK_MECHANISM ecdsa{CKM_ECDSA, nullptr, 0};

  CHECK(f.p11->C_SignInit(session, &ecdsa, 0x7fff0000) == CKR_KEY_HANDLE_INVALID);
  CHECK(f.p11->C_SignInit(session, &ecdsa, CK_INVALID_HANDLE) == CKR_KEY_HANDLE_INVALID);

  CK_MECHANISM aes{CKM_AES_CBC, nullptr, 0};
  CHECK(f.p11->C_SignInit(session, &aes, keys.privateKey) == CKR_MECHANISM_INVALID);
  CK_MECHANISM md5{CKM_MD5_RSA_PKCS, nullptr, 0};  // SoftHSM has it; dojang does not serve it
  CHECK(f.p11->C_SignInit(session, &md5, keys.privateKey) == CKR_MECHANISM_INVALID);
  CK_MECHANISM vendor{CKM_VENDOR_DEFINED + 1, nullptr, 0};
  CHECK(f.p11->C_SignInit(session, &vendor, keys.privateKey) == CKR_MECHANISM_INVALID);

  CK_MECHANISM rsa{CKM_SHA256_RSA_PKCS, nullptr, 0};
  CHECK(f.p11->C_SignInit(session, &rsa, keys.privateKey) == CKR_KEY_TYPE_INCONSISTENT);
  CHECK(f.p11->C_SignInit(session, &ecdsa, keys.publicKey) == CKR_KEY_TYPE_INCONSISTENT);

  // None of that left an operation behind.
  REQUIRE(f.p11->C_SignInit(session, &ecdsa, keys.privateKey) == CKR_OK);
  CHECK(f.p11->C_SignInit(session, &ecdsa, keys.privateKey) == CKR_OPERATION_ACTIVE);
  CK_ULONG length = 0;
  Bytes hash = kSha256Abc;
  CHECK(f.p11->C_Sign(session, hash.data(), 32, nullptr, &length) == CKR_OK);
  CHECK(length == 64);
  CHECK(f.p11->C_Sign(CK_INVALID_HANDLE, hash.data(), 32, nullptr, &length) == CKR_SESSION_HANDLE_INVALID);
}

TEST_CASE("C_Digest, single- and multi-part", "[protocol]") {
  Fixture f;
  const auto session = f.module.openSession(false);  // no login needed
  CK_MECHANISM sha256{CKM_SHA256, nullptr, 0};
  Bytes abc = bytesOf("abc");

  REQUIRE(f.p11->C_DigestInit(session, &sha256) == CKR_OK);
  CK_ULONG length = 0;
  REQUIRE(f.p11->C_Digest(session, abc.data(), 3, nullptr, &length) == CKR_OK);
  CHECK(length == 32);
  Bytes digest(32);
  CK_ULONG small = 31;
  CHECK(f.p11->C_Digest(session, abc.data(), 3, digest.data(), &small) == CKR_BUFFER_TOO_SMALL);
  REQUIRE(f.p11->C_Digest(session, abc.data(), 3, digest.data(), &length) == CKR_OK);
  CHECK(digest == kSha256Abc);

  REQUIRE(f.p11->C_DigestInit(session, &sha256) == CKR_OK);
  REQUIRE(f.p11->C_DigestUpdate(session, abc.data(), 1) == CKR_OK);
  REQUIRE(f.p11->C_DigestUpdate(session, abc.data() + 1, 2) == CKR_OK);
  Bytes multi(32);
  length = 32;
  REQUIRE(f.p11->C_DigestFinal(session, multi.data(), &length) == CKR_OK);
  CHECK(multi == kSha256Abc);

  CK_MECHANISM md5{CKM_MD5, nullptr, 0};
  CHECK(f.p11->C_DigestInit(session, &md5) == CKR_MECHANISM_INVALID);
}

// PKCS#11 5.2: a size query keeps the operation active in the mode that asked; the other mode's
// calls are CKR_OPERATION_ACTIVE (and, failing, end the operation).
TEST_CASE("after a single-part size query, the multi-part calls are CKR_OPERATION_ACTIVE", "[protocol]") {
  Fixture f;
  const auto session = f.module.openSession();
  CK_MECHANISM sha256{CKM_SHA256, nullptr, 0};
  Bytes abc = bytesOf("abc");
  Bytes out(64);
  CK_ULONG length = 0;

  REQUIRE(f.p11->C_DigestInit(session, &sha256) == CKR_OK);
  REQUIRE(f.p11->C_Digest(session, abc.data(), 3, nullptr, &length) == CKR_OK);
  length = static_cast<CK_ULONG>(out.size());
  CHECK(f.p11->C_DigestFinal(session, out.data(), &length) == CKR_OPERATION_ACTIVE);
  CHECK(f.p11->C_DigestFinal(session, out.data(), &length) == CKR_OPERATION_NOT_INITIALIZED);

  REQUIRE(f.p11->C_DigestInit(session, &sha256) == CKR_OK);
  REQUIRE(f.p11->C_Digest(session, abc.data(), 3, nullptr, &length) == CKR_OK);
  CHECK(f.p11->C_DigestUpdate(session, abc.data(), 3) == CKR_OPERATION_ACTIVE);

  REQUIRE(f.p11->C_DigestInit(session, &sha256) == CKR_OK);
  REQUIRE(f.p11->C_DigestUpdate(session, abc.data(), 3) == CKR_OK);
  REQUIRE(f.p11->C_DigestFinal(session, nullptr, &length) == CKR_OK);
  CHECK(f.p11->C_Digest(session, abc.data(), 3, out.data(), &length) == CKR_OPERATION_ACTIVE);

  // The single-part call that asked still gets its result.
  REQUIRE(f.p11->C_DigestInit(session, &sha256) == CKR_OK);
  REQUIRE(f.p11->C_Digest(session, abc.data(), 3, nullptr, &length) == CKR_OK);
  REQUIRE(f.p11->C_Digest(session, abc.data(), 3, out.data(), &length) == CKR_OK);
  out.resize(length);
  CHECK(out == kSha256Abc);

  REQUIRE(f.module.login(session) == CKR_OK);
  const auto keys = f.module.generateEc(session);
  CK_MECHANISM ecdsa{CKM_ECDSA, nullptr, 0};
  Bytes hash = kSha256Abc;
  REQUIRE(f.p11->C_SignInit(session, &ecdsa, keys.privateKey) == CKR_OK);
  REQUIRE(f.p11->C_Sign(session, hash.data(), 32, nullptr, &length) == CKR_OK);
  CHECK(f.p11->C_SignUpdate(session, hash.data(), 32) == CKR_OPERATION_ACTIVE);
  REQUIRE(f.p11->C_SignInit(session, &ecdsa, keys.privateKey) == CKR_OK);
  REQUIRE(f.p11->C_Sign(session, hash.data(), 32, nullptr, &length) == CKR_OK);
  Bytes signature(length);
  CHECK(f.p11->C_SignFinal(session, signature.data(), &length) == CKR_OPERATION_ACTIVE);
}

TEST_CASE("C_FindObjects hands out results in batches", "[protocol][objects]") {
  Fixture f;
  const auto session = f.module.openSession();
  std::set<CK_OBJECT_HANDLE> created;
  for (int i = 0; i < 5; ++i) {
    Template data;
    data.ulong(CKA_CLASS, CKO_DATA).flag(CKA_TOKEN, false).flag(CKA_PRIVATE, false).text(CKA_LABEL, "batch");
    data.text(CKA_VALUE, "value " + std::to_string(i));
    CK_OBJECT_HANDLE object = CK_INVALID_HANDLE;
    REQUIRE(f.p11->C_CreateObject(session, data.data(), data.size(), &object) == CKR_OK);
    created.insert(object);
  }
  REQUIRE(created.size() == 5);

  CK_OBJECT_HANDLE unused[2];
  CK_ULONG count = 0;
  CHECK(f.p11->C_FindObjects(session, unused, 2, &count) == CKR_OPERATION_NOT_INITIALIZED);

  Template byLabel;
  byLabel.text(CKA_LABEL, "batch");
  REQUIRE(f.p11->C_FindObjectsInit(session, byLabel.data(), byLabel.size()) == CKR_OK);
  CHECK(f.p11->C_FindObjectsInit(session, byLabel.data(), byLabel.size()) == CKR_OPERATION_ACTIVE);
  std::vector<CK_ULONG> batches;
  std::set<CK_OBJECT_HANDLE> found;
  for (int round = 0; round < 4; ++round) {
    CK_OBJECT_HANDLE batch[2] = {CK_INVALID_HANDLE, CK_INVALID_HANDLE};
    REQUIRE(f.p11->C_FindObjects(session, batch, 2, &count) == CKR_OK);
    batches.push_back(count);
    found.insert(batch, batch + count);
  }
  REQUIRE(f.p11->C_FindObjectsFinal(session) == CKR_OK);
  CHECK(batches == std::vector<CK_ULONG>{2, 2, 1, 0});
  CHECK(found == created);
  CHECK(f.p11->C_FindObjectsFinal(session) == CKR_OPERATION_NOT_INITIALIZED);

  Template none;
  none.text(CKA_LABEL, "no such label");
  CHECK(f.module.find(session, none).empty());

  SECTION("a destroyed object is no longer found") {
    REQUIRE(f.p11->C_DestroyObject(session, *created.begin()) == CKR_OK);
    Template again;
    again.text(CKA_LABEL, "batch");
    CHECK(f.module.find(session, again).size() == 4);
  }
}

TEST_CASE("C_GetAttributeValue: two calls, and sensitive attributes", "[protocol][objects]") {
  Fixture f;
  const auto session = f.module.openSession();
  REQUIRE(f.module.login(session) == CKR_OK);
  const auto keys = f.module.generateEc(session, false, "attribute-test");

  SECTION("NULL buffer, too small, then success") {
    CK_ATTRIBUTE point{CKA_EC_POINT, nullptr, 0};
    REQUIRE(f.p11->C_GetAttributeValue(session, keys.publicKey, &point, 1) == CKR_OK);
    const CK_ULONG size = point.ulValueLen;
    CHECK(size == 67);  // DER OCTET STRING around an uncompressed P-256 point
    Bytes value(size);
    point.pValue = value.data();
    point.ulValueLen = size - 1;
    CHECK(f.p11->C_GetAttributeValue(session, keys.publicKey, &point, 1) == CKR_BUFFER_TOO_SMALL);
    CHECK(point.ulValueLen == CK_UNAVAILABLE_INFORMATION);
    point.ulValueLen = size;
    REQUIRE(f.p11->C_GetAttributeValue(session, keys.publicKey, &point, 1) == CKR_OK);
    CHECK(point.ulValueLen == size);
    CHECK(value[0] == 0x04);
    CHECK(value[2] == 0x04);
  }
  SECTION("secret attributes are sensitive; the others in the same call are filled") {
    Bytes label(64);
    Bytes secret(64);
    CK_ATTRIBUTE templ[] = {{CKA_LABEL, label.data(), 64}, {CKA_VALUE, secret.data(), 64}};
    CHECK(f.p11->C_GetAttributeValue(session, keys.privateKey, templ, 2) == CKR_ATTRIBUTE_SENSITIVE);
    CHECK(templ[0].ulValueLen == 14);
    CHECK(std::string(label.begin(), label.begin() + 14) == "attribute-test");
    CHECK(templ[1].ulValueLen == CK_UNAVAILABLE_INFORMATION);
  }
  SECTION("private keys are sensitive and unextractable whatever the template asked") {
    CK_BBOOL sensitive = CK_FALSE;
    CK_BBOOL extractable = CK_TRUE;
    CK_BBOOL isPrivate = CK_FALSE;
    CK_ATTRIBUTE templ[] = {{CKA_SENSITIVE, &sensitive, sizeof sensitive},
                            {CKA_EXTRACTABLE, &extractable, sizeof extractable},
                            {CKA_PRIVATE, &isPrivate, sizeof isPrivate}};
    REQUIRE(f.p11->C_GetAttributeValue(session, keys.privateKey, templ, 3) == CKR_OK);
    CHECK(sensitive == CK_TRUE);
    CHECK(extractable == CK_FALSE);
    CHECK(isPrivate == CK_TRUE);

    CK_BBOOL no = CK_FALSE;
    CK_ATTRIBUTE loosen{CKA_SENSITIVE, &no, sizeof no};
    CHECK(f.p11->C_SetAttributeValue(session, keys.privateKey, &loosen, 1) == CKR_ATTRIBUTE_READ_ONLY);
  }
  SECTION("an RSA key's private parts") {
    const auto rsa = f.module.generateRsa(session);
    CK_ATTRIBUTE templ[] = {{CKA_PRIVATE_EXPONENT, nullptr, 0},
                            {CKA_PRIME_1, nullptr, 0},
                            {CKA_COEFFICIENT, nullptr, 0},
                            {CKA_MODULUS, nullptr, 0}};
    CHECK(f.p11->C_GetAttributeValue(session, rsa.privateKey, templ, 4) == CKR_ATTRIBUTE_SENSITIVE);
    CHECK(templ[0].ulValueLen == CK_UNAVAILABLE_INFORMATION);
    CHECK(templ[1].ulValueLen == CK_UNAVAILABLE_INFORMATION);
    CHECK(templ[2].ulValueLen == CK_UNAVAILABLE_INFORMATION);
    CHECK(templ[3].ulValueLen == 256);
  }
  SECTION("an unknown object handle") {
    CK_ATTRIBUTE label{CKA_LABEL, nullptr, 0};
    CHECK(f.p11->C_GetAttributeValue(session, 0x7fff0000, &label, 1) == CKR_OBJECT_HANDLE_INVALID);
  }
}

TEST_CASE("login isolation: a second client cannot use the first client's private key", "[protocol][login]") {
  Fixture f;
  const auto session = f.module.openSession();
  REQUIRE(f.module.login(session) == CKR_OK);
  const auto tokenKey = f.module.generateEc(session, true, "token-key");
  const auto sessionKey = f.module.generateEc(session, false, "session-key");
  CK_MECHANISM ecdsa{CKM_ECDSA, nullptr, 0};
  REQUIRE(f.module.sign(session, ecdsa, tokenKey.privateKey, kSha256Abc).size() == 64);

  WireClient second(f.daemon, 0x22);
  const auto theirs = second.openSession(f.module.slot);

  // Not logged in: the first client's login does not carry over.
  CHECK(second.findPrivateKeys(theirs).empty());
  CHECK(second.checkSign(theirs, tokenKey.privateKey) == CKR_KEY_HANDLE_INVALID);
  CHECK(second.sign(theirs, tokenKey.privateKey) == CKR_KEY_HANDLE_INVALID);
  CHECK(second.sign(theirs, sessionKey.privateKey) == CKR_KEY_HANDLE_INVALID);
  wire::GetAttributeValueReply attributes;
  CHECK(second.call<wire::CallId::GetAttributeValue>({theirs, tokenKey.privateKey, {CKA_LABEL}}, attributes) ==
        CKR_OBJECT_HANDLE_INVALID);
  wire::GetSessionInfoReply sessionInfo;
  REQUIRE(second.call<wire::CallId::GetSessionInfo>({theirs}, sessionInfo) == CKR_OK);
  CHECK(sessionInfo.info.state == CKS_RW_PUBLIC_SESSION);
  // Sessions belong to their client.
  CHECK(second.call<wire::CallId::GetSessionInfo>({session}, sessionInfo) == CKR_SESSION_HANDLE_INVALID);
  CHECK(second.sign(session, tokenKey.privateKey) == CKR_SESSION_HANDLE_INVALID);

  // A wrong PIN is refused; the right one logs this client in too.
  CHECK(second.login(theirs, "999999") == CKR_PIN_INCORRECT);
  CHECK(second.sign(theirs, tokenKey.privateKey) == CKR_KEY_HANDLE_INVALID);
  REQUIRE(second.login(theirs, f.daemon.softhsm().pin()) == CKR_OK);
  CHECK(second.findPrivateKeys(theirs) == std::vector<std::uint64_t>{tokenKey.privateKey});
  Bytes signature;
  CHECK(second.sign(theirs, tokenKey.privateKey, &signature) == CKR_OK);
  CHECK(signature.size() == 64);
  // The first client's session key stays its own.
  CHECK(second.sign(theirs, sessionKey.privateKey) == CKR_KEY_HANDLE_INVALID);

  // The second client's last session closing logs it out, not the first client.
  REQUIRE(second.call<wire::CallId::CloseSession>({theirs}) == CKR_OK);
  const auto again = second.openSession(f.module.slot);
  CHECK(second.sign(again, tokenKey.privateKey) == CKR_KEY_HANDLE_INVALID);
  CHECK(f.module.sessionState(session) == CKS_RW_USER_FUNCTIONS);
  CHECK(f.module.sign(session, ecdsa, tokenKey.privateKey, kSha256Abc).size() == 64);
}

// Regression: TokenState::login does not check anything for a NULL PIN (pinGiven = false) once the
// token is logged in, so a second client gets the first client's login for free.
TEST_CASE("a second client cannot log in with a NULL PIN while the first is logged in",
          "[protocol][login]") {
  Fixture f;
  const auto session = f.module.openSession();
  REQUIRE(f.module.login(session) == CKR_OK);
  const auto tokenKey = f.module.generateEc(session, true, "token-key");

  WireClient second(f.daemon, 0x33);
  const auto theirs = second.openSession(f.module.slot);
  CHECK(second.login(theirs, "", false) == CKR_PIN_INCORRECT);
  CHECK(second.sign(theirs, tokenKey.privateKey) == CKR_KEY_HANDLE_INVALID);
}

TEST_CASE("closing the last session logs the client out", "[protocol][login]") {
  Fixture f;
  const auto first = f.module.openSession();
  const auto second = f.module.openSession();
  REQUIRE(f.module.login(first) == CKR_OK);
  CHECK(f.module.sessionState(second) == CKS_RW_USER_FUNCTIONS);  // login is per application
  const auto keys = f.module.generateEc(first, true, "kept");
  CK_MECHANISM ecdsa{CKM_ECDSA, nullptr, 0};
  REQUIRE(f.module.sign(second, ecdsa, keys.privateKey, kSha256Abc).size() == 64);

  REQUIRE(f.p11->C_CloseSession(first) == CKR_OK);
  CHECK(f.module.sessionState(second) == CKS_RW_USER_FUNCTIONS);
  REQUIRE(f.module.sign(second, ecdsa, keys.privateKey, kSha256Abc).size() == 64);

  REQUIRE(f.p11->C_CloseSession(second) == CKR_OK);
  const auto third = f.module.openSession();
  CHECK(f.module.sessionState(third) == CKS_RW_PUBLIC_SESSION);
  Template privateKeys;
  privateKeys.ulong(CKA_CLASS, CKO_PRIVATE_KEY);
  CHECK(f.module.find(third, privateKeys).empty());

  // The key is still on the token but this client may not use it now: it does not even see it.
  CHECK(f.p11->C_SignInit(third, &ecdsa, keys.privateKey) == CKR_KEY_HANDLE_INVALID);

  // Logged in again, the key is found again. (SoftHSM renumbers private objects after a logout,
  // as PKCS#11 allows, so the old handle is not reused here.)
  REQUIRE(f.module.login(third) == CKR_OK);
  Template kept;
  kept.ulong(CKA_CLASS, CKO_PRIVATE_KEY).text(CKA_LABEL, "kept");
  const auto found = f.module.find(third, kept);
  REQUIRE(found.size() == 1);
  CHECK(f.module.sign(third, ecdsa, found[0], kSha256Abc).size() == 64);
}

// Regression: the module remembers keys the daemon accepted for C_SignInit and forgets them on
// C_Login/C_Logout, but not when closing the last session logged the client out. So C_SignInit with
// a private key that is no longer usable returns CKR_OK and the failure only shows at C_Sign.
TEST_CASE("after the implicit logout C_SignInit refuses the private key", "[protocol][login]") {
  Fixture f;
  const auto first = f.module.openSession();
  REQUIRE(f.module.login(first) == CKR_OK);
  const auto keys = f.module.generateEc(first, true, "kept");
  CK_MECHANISM ecdsa{CKM_ECDSA, nullptr, 0};
  REQUIRE(f.module.sign(first, ecdsa, keys.privateKey, kSha256Abc).size() == 64);
  REQUIRE(f.p11->C_CloseSession(first) == CKR_OK);
  const auto second = f.module.openSession();
  const CK_RV rv = f.p11->C_SignInit(second, &ecdsa, keys.privateKey);
  CHECK((rv == CKR_KEY_HANDLE_INVALID || rv == CKR_USER_NOT_LOGGED_IN));
}

TEST_CASE("round trips: a signature costs one frame in steady state", "[protocol][round-trips]") {
  Fixture f;
  auto& frames = f.frames;
  auto measure = [&frames](const char* what, const std::function<void()>& action) {
    const auto before = frames.count();
    action();
    const auto sent = frames.count() - before;
    std::cout << "round trips: " << what << ": " << sent << " (" << frames.namesSince(before) << ")\n";
    return sent;
  };

  CK_SESSION_HANDLE session = CK_INVALID_HANDLE;
  CHECK(measure("C_OpenSession", [&] { session = f.module.openSession(); }) == 1);
  CHECK(measure("C_Login", [&] { REQUIRE(f.module.login(session) == CKR_OK); }) == 1);
  KeyPair keys;
  CHECK(measure("C_GenerateKeyPair (EC P-256)", [&] { keys = f.module.generateEc(session); }) == 1);

  CK_MECHANISM ecdsa{CKM_ECDSA, nullptr, 0};
  Bytes hash = kSha256Abc;
  Bytes signature(64);
  auto signOnce = [&] {
    REQUIRE(f.p11->C_SignInit(session, &ecdsa, keys.privateKey) == CKR_OK);
    CK_ULONG length = static_cast<CK_ULONG>(signature.size());
    REQUIRE(f.p11->C_Sign(session, hash.data(), 32, signature.data(), &length) == CKR_OK);
  };
  // The mechanism list (once per slot), the key check (once per key and mechanism), the signature.
  CHECK(measure("first C_SignInit+C_Sign", signOnce) == 3);
  for (int i = 0; i < 20; ++i) {
    INFO("signature " << i + 2);
    CHECK(measure("steady C_SignInit+C_Sign", signOnce) == 1);
  }
  auto signTwoCalls = [&] {
    REQUIRE(f.p11->C_SignInit(session, &ecdsa, keys.privateKey) == CKR_OK);
    CK_ULONG length = 0;
    REQUIRE(f.p11->C_Sign(session, hash.data(), 32, nullptr, &length) == CKR_OK);
    REQUIRE(f.p11->C_Sign(session, hash.data(), 32, signature.data(), &length) == CKR_OK);
  };
  CHECK(measure("steady C_SignInit+C_Sign(NULL)+C_Sign", signTwoCalls) == 1);

  CHECK(measure("first C_VerifyInit+C_Verify", [&] {
          CHECK(f.module.verify(session, ecdsa, keys.publicKey, hash, signature) == CKR_OK);
        }) == 2);
  CHECK(measure("steady C_VerifyInit+C_Verify", [&] {
          CHECK(f.module.verify(session, ecdsa, keys.publicKey, hash, signature) == CKR_OK);
        }) == 1);
  CK_MECHANISM sha256{CKM_SHA256, nullptr, 0};
  CHECK(measure("C_DigestInit+C_Digest", [&] {
          REQUIRE(f.p11->C_DigestInit(session, &sha256) == CKR_OK);
          Bytes digest(32);
          CK_ULONG length = 32;
          REQUIRE(f.p11->C_Digest(session, hash.data(), 32, digest.data(), &length) == CKR_OK);
        }) == 1);
  CK_ATTRIBUTE point{CKA_EC_POINT, nullptr, 0};
  Bytes value;
  // wire/types.h: the module applies the caller's buffer sizes itself, so a size query and the
  // read that follows cost one round trip.
  CHECK(measure("C_GetAttributeValue (size, then value)", [&] {
          point = {CKA_EC_POINT, nullptr, 0};
          REQUIRE(f.p11->C_GetAttributeValue(session, keys.publicKey, &point, 1) == CKR_OK);
          value.assign(point.ulValueLen, 0);
          point.pValue = value.data();
          REQUIRE(f.p11->C_GetAttributeValue(session, keys.publicKey, &point, 1) == CKR_OK);
        }) == 1);
  CHECK(value.size() == 67);
  CHECK(value[0] == 0x04);
  // Only the read right after the size query is served from it.
  CHECK(measure("C_GetAttributeValue (value again)", [&] {
          REQUIRE(f.p11->C_GetAttributeValue(session, keys.publicKey, &point, 1) == CKR_OK);
        }) == 1);
  CHECK(measure("C_FindObjectsInit+C_FindObjects+C_FindObjectsFinal", [&] {
          Template privateKeys;
          privateKeys.ulong(CKA_CLASS, CKO_PRIVATE_KEY);
          CHECK(f.module.find(session, privateKeys).size() == 1);
        }) == 1);
  CHECK(measure("C_CloseSession", [&] { REQUIRE(f.p11->C_CloseSession(session) == CKR_OK); }) == 1);
}

TEST_CASE("a kept size-query reply is dropped by other calls and by writes", "[protocol][round-trips]") {
  Fixture f;
  const auto session = f.module.openSession();
  const auto other = f.module.openSession();
  REQUIRE(f.module.login(session) == CKR_OK);
  Template data;
  data.ulong(CKA_CLASS, CKO_DATA).flag(CKA_TOKEN, false).flag(CKA_PRIVATE, false).text(CKA_LABEL, "before");
  CK_OBJECT_HANDLE object = CK_INVALID_HANDLE;
  REQUIRE(f.p11->C_CreateObject(session, data.data(), data.size(), &object) == CKR_OK);
  auto readLabel = [&](CK_SESSION_HANDLE on) {
    CK_ATTRIBUTE label{CKA_LABEL, nullptr, 0};
    REQUIRE(f.p11->C_GetAttributeValue(on, object, &label, 1) == CKR_OK);
    return label.ulValueLen;
  };
  auto labelWithBuffer = [&](CK_SESSION_HANDLE on) {
    Bytes buffer(64);
    CK_ATTRIBUTE label{CKA_LABEL, buffer.data(), 64};
    REQUIRE(f.p11->C_GetAttributeValue(on, object, &label, 1) == CKR_OK);
    return std::string(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(label.ulValueLen));
  };
  auto sent = [&](const std::function<void()>& action) {
    const auto before = f.frames.count();
    action();
    return f.frames.count() - before;
  };

  SECTION("a write anywhere in the process") {
    CHECK(readLabel(session) == 6);
    Template relabel;
    relabel.text(CKA_LABEL, "after, longer");
    REQUIRE(f.p11->C_SetAttributeValue(other, object, relabel.data(), relabel.size()) == CKR_OK);
    CHECK(sent([&] { CHECK(labelWithBuffer(session) == "after, longer"); }) == 1);
  }
  SECTION("another call on the same session") {
    CHECK(readLabel(session) == 6);
    CK_SESSION_INFO info{};
    REQUIRE(f.p11->C_GetSessionInfo(session, &info) == CKR_OK);
    CHECK(sent([&] { CHECK(labelWithBuffer(session) == "before"); }) == 1);
  }
  SECTION("a logout") {
    CHECK(readLabel(session) == 6);
    REQUIRE(f.p11->C_Logout(other) == CKR_OK);
    CHECK(sent([&] { CHECK(labelWithBuffer(session) == "before"); }) == 1);
  }
  SECTION("another object or attribute list is not served from it") {
    CHECK(readLabel(session) == 6);
    Bytes buffer(64);
    CK_ATTRIBUTE two[] = {{CKA_LABEL, buffer.data(), 64}, {CKA_CLASS, nullptr, 0}};
    CHECK(sent([&] { REQUIRE(f.p11->C_GetAttributeValue(session, object, two, 2) == CKR_OK); }) == 1);
  }
  SECTION("calls on another session keep it") {
    CHECK(readLabel(session) == 6);
    CK_SESSION_INFO info{};
    REQUIRE(f.p11->C_GetSessionInfo(other, &info) == CKR_OK);
    CHECK(sent([&] { CHECK(labelWithBuffer(session) == "before"); }) == 0);
  }
}
