// dojang-p11bench: a generic PKCS#11 throughput and latency benchmark.
//
// Loads any PKCS#11 module by path, selects one token by label, logs in once and measures what
// real clients do on the hot path: C_SignInit + C_Sign into a preallocated buffer (ECDSA P-256,
// RSA-2048 PKCS#1 v1.5 and PSS) and C_GetAttributeValue, each with 1 and N threads, one session
// per thread. It is a tool, not a test: it reports numbers and never asserts on them.
//
// The same binary drives the three paths compared by bench/run.sh (SoftHSM directly, through
// dojangd, through p11-kit remoting), so every path pays exactly the same client-side costs.

#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <latch>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "src/common/cryptoki/cryptoki.h"

// p11-kit's header maps its lower-case names onto the standard ones with object-like macros;
// `count` and `value` would otherwise rewrite std::chrono's count() and our own identifiers.
#undef count
#undef value

namespace dojang::bench {
namespace {

using Clock = std::chrono::steady_clock;
using Bytes = std::vector<CK_BYTE>;

// ---------------------------------------------------------------------------------------------
// Errors: the one place where a CK_RV becomes an exception.

std::string rvName(CK_RV rv) {
  switch (rv) {
#define DOJANG_BENCH_RV(name) \
  case name:                  \
    return #name;
    DOJANG_BENCH_RV(CKR_OK)
    DOJANG_BENCH_RV(CKR_GENERAL_ERROR)
    DOJANG_BENCH_RV(CKR_FUNCTION_FAILED)
    DOJANG_BENCH_RV(CKR_ARGUMENTS_BAD)
    DOJANG_BENCH_RV(CKR_DEVICE_ERROR)
    DOJANG_BENCH_RV(CKR_DEVICE_REMOVED)
    DOJANG_BENCH_RV(CKR_FUNCTION_NOT_SUPPORTED)
    DOJANG_BENCH_RV(CKR_KEY_HANDLE_INVALID)
    DOJANG_BENCH_RV(CKR_KEY_TYPE_INCONSISTENT)
    DOJANG_BENCH_RV(CKR_MECHANISM_INVALID)
    DOJANG_BENCH_RV(CKR_MECHANISM_PARAM_INVALID)
    DOJANG_BENCH_RV(CKR_OBJECT_HANDLE_INVALID)
    DOJANG_BENCH_RV(CKR_OPERATION_ACTIVE)
    DOJANG_BENCH_RV(CKR_OPERATION_NOT_INITIALIZED)
    DOJANG_BENCH_RV(CKR_PIN_INCORRECT)
    DOJANG_BENCH_RV(CKR_PIN_LOCKED)
    DOJANG_BENCH_RV(CKR_SESSION_HANDLE_INVALID)
    DOJANG_BENCH_RV(CKR_SESSION_READ_ONLY)
    DOJANG_BENCH_RV(CKR_SIGNATURE_INVALID)
    DOJANG_BENCH_RV(CKR_SIGNATURE_LEN_RANGE)
    DOJANG_BENCH_RV(CKR_TEMPLATE_INCOMPLETE)
    DOJANG_BENCH_RV(CKR_TEMPLATE_INCONSISTENT)
    DOJANG_BENCH_RV(CKR_TOKEN_NOT_PRESENT)
    DOJANG_BENCH_RV(CKR_TOKEN_NOT_RECOGNIZED)
    DOJANG_BENCH_RV(CKR_USER_NOT_LOGGED_IN)
    DOJANG_BENCH_RV(CKR_USER_ALREADY_LOGGED_IN)
    DOJANG_BENCH_RV(CKR_BUFFER_TOO_SMALL)
    DOJANG_BENCH_RV(CKR_CRYPTOKI_NOT_INITIALIZED)
    DOJANG_BENCH_RV(CKR_CRYPTOKI_ALREADY_INITIALIZED)
    DOJANG_BENCH_RV(CKR_ATTRIBUTE_TYPE_INVALID)
    DOJANG_BENCH_RV(CKR_ATTRIBUTE_SENSITIVE)
    DOJANG_BENCH_RV(CKR_DATA_LEN_RANGE)
#undef DOJANG_BENCH_RV
    default: {
      std::array<char, 32> hex{};
      std::snprintf(hex.data(), hex.size(), "CKR_0x%08lx", rv);
      return hex.data();
    }
  }
}

class P11Error final : public std::runtime_error {
 public:
  P11Error(CK_RV rv, std::string_view call)
      : std::runtime_error(std::string(call) + " failed: " + rvName(rv)), m_rv(rv) {}
  [[nodiscard]] CK_RV rv() const noexcept { return m_rv; }

 private:
  CK_RV m_rv;
};

void check(CK_RV rv, std::string_view call) {
  if (rv != CKR_OK) throw P11Error(rv, call);
}

// ---------------------------------------------------------------------------------------------
// RAII owners: the loaded and initialised module, and one session.

class Module final {
 public:
  explicit Module(const std::string& path) {
    void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
      const char* why = dlerror();
      throw std::runtime_error("dlopen " + path + ": " + (why != nullptr ? why : "unknown error"));
    }
    auto* getList = reinterpret_cast<CK_C_GetFunctionList>(dlsym(handle, "C_GetFunctionList"));
    if (getList == nullptr) {
      dlclose(handle);
      throw std::runtime_error(path + " exports no C_GetFunctionList");
    }
    CK_RV rv = getList(&m_fns);
    if (rv != CKR_OK || m_fns == nullptr) {
      dlclose(handle);
      throw P11Error(rv == CKR_OK ? CKR_GENERAL_ERROR : rv, "C_GetFunctionList");
    }
    // Like NSS: the module may use its own OS locking, we call it from several threads.
    CK_C_INITIALIZE_ARGS args{};
    args.flags = CKF_OS_LOCKING_OK;
    rv = m_fns->C_Initialize(&args);
    if (rv != CKR_OK) {
      dlclose(handle);
      throw P11Error(rv, "C_Initialize");
    }
  }
  ~Module() {
    m_fns->C_Finalize(nullptr);
    // SoftHSM and OpenSSL-based modules do not survive being unloaded and reloaded reliably;
    // the process exits right after this anyway, so the library stays mapped.
  }
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  [[nodiscard]] CK_FUNCTION_LIST& fns() const noexcept { return *m_fns; }

 private:
  CK_FUNCTION_LIST* m_fns = nullptr;
};

class Session final {
 public:
  Session(const Module& module, CK_SLOT_ID slot, bool readWrite) : m_fns(&module.fns()) {
    CK_FLAGS flags = CKF_SERIAL_SESSION | (readWrite ? CKF_RW_SESSION : 0);
    check(m_fns->C_OpenSession(slot, flags, nullptr, nullptr, &m_handle), "C_OpenSession");
  }
  ~Session() {
    if (m_fns != nullptr) m_fns->C_CloseSession(m_handle);
  }
  Session(Session&& other) noexcept
      : m_fns(std::exchange(other.m_fns, nullptr)), m_handle(other.m_handle) {}
  Session& operator=(Session&& other) noexcept {
    if (this != &other) {
      if (m_fns != nullptr) m_fns->C_CloseSession(m_handle);
      m_fns = std::exchange(other.m_fns, nullptr);
      m_handle = other.m_handle;
    }
    return *this;
  }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  [[nodiscard]] CK_FUNCTION_LIST& fns() const noexcept { return *m_fns; }
  [[nodiscard]] CK_SESSION_HANDLE handle() const noexcept { return m_handle; }

 private:
  CK_FUNCTION_LIST* m_fns;
  CK_SESSION_HANDLE m_handle = 0;
};

// The PIN lives here and is wiped when the options go away.
class Pin final {
 public:
  Pin() = default;
  explicit Pin(std::string_view text) : m_bytes(text.begin(), text.end()) {}
  ~Pin() { wipe(); }
  Pin(Pin&& other) noexcept : m_bytes(std::move(other.m_bytes)) {}
  Pin(const Pin&) = delete;
  Pin& operator=(const Pin&) = delete;
  Pin& operator=(Pin&& other) noexcept {
    wipe();
    m_bytes = std::move(other.m_bytes);
    return *this;
  }
  [[nodiscard]] bool empty() const noexcept { return m_bytes.empty(); }
  [[nodiscard]] CK_UTF8CHAR* data() noexcept { return m_bytes.data(); }
  [[nodiscard]] CK_ULONG size() const noexcept { return m_bytes.size(); }

 private:
  void wipe() noexcept {
    volatile CK_UTF8CHAR* p = m_bytes.data();
    for (std::size_t i = 0; i < m_bytes.size(); ++i) p[i] = 0;
  }
  std::vector<CK_UTF8CHAR> m_bytes;
};

// ---------------------------------------------------------------------------------------------
// Token, login and key discovery / creation.

std::string trimPadded(const unsigned char* text, std::size_t size) {
  std::string s(reinterpret_cast<const char*>(text), size);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\0')) s.pop_back();
  return s;
}

CK_SLOT_ID findSlot(const Module& module, std::string_view label) {
  CK_ULONG n = 0;
  check(module.fns().C_GetSlotList(CK_TRUE, nullptr, &n), "C_GetSlotList");
  std::vector<CK_SLOT_ID> slots(n);
  check(module.fns().C_GetSlotList(CK_TRUE, slots.data(), &n), "C_GetSlotList");
  slots.resize(n);
  std::string seen;
  for (CK_SLOT_ID slot : slots) {
    CK_TOKEN_INFO info{};
    if (module.fns().C_GetTokenInfo(slot, &info) != CKR_OK) continue;
    std::string tokenLabel = trimPadded(info.label, sizeof info.label);
    if (tokenLabel == label) return slot;
    seen += (seen.empty() ? "" : ", ") + ("'" + tokenLabel + "'");
  }
  throw std::runtime_error("no token labelled '" + std::string(label) + "' (tokens: " +
                           (seen.empty() ? "none" : seen) + ")");
}

void login(const Session& session, Pin& pin) {
  CK_RV rv = session.fns().C_Login(session.handle(), CKU_USER, pin.data(), pin.size());
  if (rv == CKR_USER_ALREADY_LOGGED_IN) return;
  check(rv, "C_Login");
}

template <typename T>
CK_ATTRIBUTE attr(CK_ATTRIBUTE_TYPE type, T& field) {
  return CK_ATTRIBUTE{type, &field, sizeof field};
}
CK_ATTRIBUTE attrBytes(CK_ATTRIBUTE_TYPE type, std::span<const CK_BYTE> bytes) {
  return CK_ATTRIBUTE{type, const_cast<CK_BYTE*>(bytes.data()), bytes.size()};
}
CK_ATTRIBUTE attrText(CK_ATTRIBUTE_TYPE type, std::string_view text) {
  return CK_ATTRIBUTE{type, const_cast<char*>(text.data()), text.size()};
}

// Owns an active find operation; C_FindObjectsFinal on every way out.
class FindOperation final {
 public:
  FindOperation(const Session& session, std::span<CK_ATTRIBUTE> tmpl) : m_session(session) {
    check(m_session.fns().C_FindObjectsInit(m_session.handle(), tmpl.data(), tmpl.size()),
          "C_FindObjectsInit");
  }
  ~FindOperation() { m_session.fns().C_FindObjectsFinal(m_session.handle()); }
  FindOperation(const FindOperation&) = delete;
  FindOperation& operator=(const FindOperation&) = delete;

  std::optional<CK_OBJECT_HANDLE> next() {
    CK_OBJECT_HANDLE object = 0;
    CK_ULONG found = 0;
    check(m_session.fns().C_FindObjects(m_session.handle(), &object, 1, &found), "C_FindObjects");
    if (found == 0) return std::nullopt;
    return object;
  }

 private:
  const Session& m_session;
};

std::optional<CK_OBJECT_HANDLE> findKey(const Session& session, CK_OBJECT_CLASS cls,
                                        std::string_view label) {
  std::array<CK_ATTRIBUTE, 2> tmpl{attr(CKA_CLASS, cls), attrText(CKA_LABEL, label)};
  FindOperation find(session, tmpl);
  return find.next();
}

struct KeyPair {
  CK_OBJECT_HANDLE pub = 0;
  CK_OBJECT_HANDLE priv = 0;
};

struct Keys {
  KeyPair ec;
  KeyPair rsa;
};

constexpr std::string_view kEcLabel = "bench-ec";
constexpr std::string_view kRsaLabel = "bench-rsa";
// DER OID 1.2.840.10045.3.1.7 (prime256v1 / secp256r1).
constexpr std::array<CK_BYTE, 10> kP256Params{0x06, 0x08, 0x2a, 0x86, 0x48,
                                              0xce, 0x3d, 0x03, 0x01, 0x07};
constexpr std::array<CK_BYTE, 3> kRsaExponent{0x01, 0x00, 0x01};

KeyPair generate(const Session& session, std::string_view label, bool ec) {
  CK_BBOOL yes = CK_TRUE;
  CK_ULONG bits = 2048;
  std::string_view id = label;  // CKA_ID = label bytes; unique enough for a bench token
  std::vector<CK_ATTRIBUTE> pubTmpl{attr(CKA_TOKEN, yes), attr(CKA_VERIFY, yes),
                                    attrText(CKA_LABEL, label), attrText(CKA_ID, id)};
  std::vector<CK_ATTRIBUTE> privTmpl{attr(CKA_TOKEN, yes),     attr(CKA_PRIVATE, yes),
                                     attr(CKA_SENSITIVE, yes), attr(CKA_SIGN, yes),
                                     attrText(CKA_LABEL, label), attrText(CKA_ID, id)};
  CK_MECHANISM mech{ec ? CKM_EC_KEY_PAIR_GEN : CKM_RSA_PKCS_KEY_PAIR_GEN, nullptr, 0};
  if (ec) {
    pubTmpl.push_back(attrBytes(CKA_EC_PARAMS, kP256Params));
  } else {
    pubTmpl.push_back(attr(CKA_MODULUS_BITS, bits));
    pubTmpl.push_back(attrBytes(CKA_PUBLIC_EXPONENT, kRsaExponent));
  }
  KeyPair keys;
  check(session.fns().C_GenerateKeyPair(session.handle(), &mech, pubTmpl.data(), pubTmpl.size(),
                                        privTmpl.data(), privTmpl.size(), &keys.pub, &keys.priv),
        "C_GenerateKeyPair");
  return keys;
}

KeyPair findOrCreate(const Session& session, std::string_view label, bool ec, bool mayCreate) {
  auto pub = findKey(session, CKO_PUBLIC_KEY, label);
  auto priv = findKey(session, CKO_PRIVATE_KEY, label);
  if (pub && priv) return KeyPair{*pub, *priv};
  if (!mayCreate) {
    throw std::runtime_error("key pair '" + std::string(label) +
                             "' not on the token; run once with --setup");
  }
  std::fprintf(stderr, "p11bench: generating %s key pair '%.*s'\n", ec ? "EC P-256" : "RSA-2048",
               static_cast<int>(label.size()), label.data());
  return generate(session, label, ec);
}

// ---------------------------------------------------------------------------------------------
// The measured operations.

// SHA-256 DigestInfo prefix (RFC 8017, section 9.2, note 1).
constexpr std::array<CK_BYTE, 19> kSha256DigestInfo{0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60,
                                                    0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                                                    0x01, 0x05, 0x00, 0x04, 0x20};

Bytes fakeHash() {
  Bytes hash(32);
  for (std::size_t i = 0; i < hash.size(); ++i) hash[i] = static_cast<CK_BYTE>(0xa5 ^ (i * 7));
  return hash;
}

enum class OpKind { Sign, GetAttributes };

struct Case {
  std::string name;
  OpKind kind = OpKind::Sign;
  CK_MECHANISM_TYPE mechanism = 0;
  bool pss = false;
  CK_OBJECT_HANDLE key = 0;      // signing key or the object whose attributes are read
  CK_OBJECT_HANDLE verifyKey = 0;  // for the one-off correctness check
  Bytes input;
};

// One thread's worth of state: its session, preallocated buffers, and the op itself.
class Worker final {
 public:
  Worker(const Case& c, Session session) : m_case(c), m_session(std::move(session)) {
    m_pss = CK_RSA_PKCS_PSS_PARAMS{CKM_SHA256, CKG_MGF1_SHA256, 32};
    m_mech = CK_MECHANISM{c.mechanism, nullptr, 0};
    if (c.pss) {
      m_mech.pParameter = &m_pss;
      m_mech.ulParameterLen = sizeof m_pss;
    }
  }

  // Returns the signature length (sign cases) or the bytes read (attribute case).
  CK_ULONG op() {
    CK_FUNCTION_LIST& f = m_session.fns();
    if (m_case.kind == OpKind::Sign) {
      check(f.C_SignInit(m_session.handle(), &m_mech, m_case.key), "C_SignInit");
      CK_ULONG len = m_sig.size();
      check(f.C_Sign(m_session.handle(), const_cast<CK_BYTE*>(m_case.input.data()),
                     m_case.input.size(), m_sig.data(), &len),
            "C_Sign");
      return len;
    }
    std::array<CK_ATTRIBUTE, 3> tmpl{
        CK_ATTRIBUTE{CKA_LABEL, m_label.data(), m_label.size()},
        CK_ATTRIBUTE{CKA_ID, m_id.data(), m_id.size()},
        CK_ATTRIBUTE{CKA_KEY_TYPE, &m_keyType, sizeof m_keyType},
    };
    check(f.C_GetAttributeValue(m_session.handle(), m_case.key, tmpl.data(), tmpl.size()),
          "C_GetAttributeValue");
    return tmpl[0].ulValueLen + tmpl[1].ulValueLen + tmpl[2].ulValueLen;
  }

  // Signs once and verifies on the token, so a path that returns garbage fast is caught.
  // Throws only when the token says the signature is wrong; a module that cannot verify
  // (no C_Verify, mechanism not offered for verification) gets the reason back instead.
  std::optional<std::string> verifyOnce() {
    if (m_case.kind != OpKind::Sign) return std::nullopt;
    CK_ULONG len = op();
    CK_FUNCTION_LIST& f = m_session.fns();
    CK_RV rv = f.C_VerifyInit(m_session.handle(), &m_mech, m_case.verifyKey);
    if (rv != CKR_OK) return "C_VerifyInit: " + rvName(rv);
    rv = f.C_Verify(m_session.handle(), const_cast<CK_BYTE*>(m_case.input.data()),
                    m_case.input.size(), m_sig.data(), len);
    if (rv == CKR_SIGNATURE_INVALID || rv == CKR_SIGNATURE_LEN_RANGE) {
      throw std::runtime_error(m_case.name + ": the token rejects the signature it made (" +
                               rvName(rv) + ")");
    }
    if (rv != CKR_OK) return "C_Verify: " + rvName(rv);
    return std::nullopt;
  }

 private:
  const Case& m_case;
  Session m_session;
  CK_RSA_PKCS_PSS_PARAMS m_pss{};
  CK_MECHANISM m_mech{};
  std::array<CK_BYTE, 512> m_sig{};
  std::array<CK_BYTE, 64> m_label{};
  std::array<CK_BYTE, 64> m_id{};
  CK_KEY_TYPE m_keyType = 0;
};

struct Result {
  std::string name;
  unsigned threads = 0;
  std::uint64_t ops = 0;
  double seconds = 0;
  double opsPerSecond = 0;
  double p50Us = 0;
  double p99Us = 0;
};

struct Limits {
  double seconds = 2.0;
  std::uint64_t opsPerThread = 0;  // non-zero: fixed op count instead of a duration
  unsigned warmupOps = 3;
};

double percentileUs(std::vector<std::uint32_t>& nanos, double q) {
  if (nanos.empty()) return 0;
  auto index = static_cast<std::size_t>(q * static_cast<double>(nanos.size() - 1));
  std::nth_element(nanos.begin(), nanos.begin() + static_cast<std::ptrdiff_t>(index), nanos.end());
  return static_cast<double>(nanos[index]) / 1000.0;
}

Result runCase(const Module& module, CK_SLOT_ID slot, const Case& c, unsigned threads,
               const Limits& limits) {
  std::vector<Worker> workers;
  workers.reserve(threads);
  for (unsigned i = 0; i < threads; ++i) workers.emplace_back(c, Session(module, slot, false));
  for (Worker& w : workers) {
    for (unsigned i = 0; i < limits.warmupOps; ++i) w.op();
  }

  std::vector<std::vector<std::uint32_t>> latencies(threads);
  std::vector<Clock::time_point> starts(threads);
  std::vector<Clock::time_point> ends(threads);
  std::atomic<bool> stop{false};
  std::mutex errorMutex;
  std::exception_ptr error;
  std::latch ready(threads + 1);
  Clock::time_point deadline;

  auto body = [&](unsigned t) {
    std::vector<std::uint32_t>& lat = latencies[t];
    lat.reserve(limits.opsPerThread != 0 ? limits.opsPerThread : 1U << 16);
    ready.arrive_and_wait();
    Clock::time_point now = Clock::now();
    starts[t] = now;
    try {
      for (std::uint64_t n = 0; !stop.load(std::memory_order_relaxed); ++n) {
        if (limits.opsPerThread != 0 ? n >= limits.opsPerThread : now >= deadline) break;
        // A fresh start time, so recording the previous latency is never counted.
        Clock::time_point before = Clock::now();
        workers[t].op();
        now = Clock::now();
        auto nanos = std::chrono::duration_cast<std::chrono::nanoseconds>(now - before).count();
        lat.push_back(static_cast<std::uint32_t>(std::min<std::int64_t>(nanos, UINT32_MAX)));
      }
    } catch (...) {
      std::lock_guard lock(errorMutex);
      if (!error) error = std::current_exception();
      stop = true;
    }
    ends[t] = Clock::now();
  };

  std::vector<std::jthread> pool;
  pool.reserve(threads);
  for (unsigned t = 0; t < threads; ++t) pool.emplace_back(body, t);
  // Published to the workers by the latch.
  deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                std::chrono::duration<double>(limits.seconds));
  ready.arrive_and_wait();
  pool.clear();  // joins
  if (error) std::rethrow_exception(error);

  Result r;
  r.name = c.name;
  r.threads = threads;
  std::vector<std::uint32_t> all;
  for (auto& lat : latencies) {
    r.ops += lat.size();
    all.insert(all.end(), lat.begin(), lat.end());
  }
  auto first = *std::min_element(starts.begin(), starts.end());
  auto last = *std::max_element(ends.begin(), ends.end());
  r.seconds = std::chrono::duration<double>(last - first).count();
  r.opsPerSecond = r.seconds > 0 ? static_cast<double>(r.ops) / r.seconds : 0;
  r.p50Us = percentileUs(all, 0.50);
  r.p99Us = percentileUs(all, 0.99);
  return r;
}

// ---------------------------------------------------------------------------------------------
// Command line and output.

struct Options {
  std::string module;
  std::string token = "bench";
  Pin pin;
  bool setupOnly = false;
  bool json = false;
  unsigned holdSeconds = 0;
  bool hold = false;
  Limits limits;
  std::vector<unsigned> threads{1, 4};
  std::vector<std::string> cases{"ecdsa-p256", "rsa2048-pkcs", "rsa2048-pss", "getattr"};
};

constexpr const char* kUsage =
    "usage: dojang-p11bench --module PATH [options]\n"
    "  --module PATH      PKCS#11 module to dlopen\n"
    "  --token LABEL      token label (default: bench)\n"
    "  --pin PIN          user PIN (default: $P11BENCH_PIN)\n"
    "  --setup            create the bench-ec / bench-rsa key pairs if absent, then exit\n"
    "  --duration S       seconds per case and thread count (default: 2)\n"
    "  --ops N            fixed op count per thread instead of a duration\n"
    "  --quick            same as --duration 0.5\n"
    "  --threads LIST     thread counts, comma separated (default: 1,4)\n"
    "  --cases LIST       of ecdsa-p256,rsa2048-pkcs,rsa2048-pss,getattr (default: all)\n"
    "  --json             print the results as one JSON object\n"
    "  --hold N           log in, sign a few times, print 'ready', sleep N s, exit\n";

std::vector<std::string> splitList(std::string_view text) {
  std::vector<std::string> out;
  while (!text.empty()) {
    auto comma = text.find(',');
    std::string_view item = text.substr(0, comma);
    if (!item.empty()) out.emplace_back(item);
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return out;
}

template <typename T>
T parseNumber(std::string_view flag, std::string_view text) {
  T out{};
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  if (ec != std::errc{} || end != text.data() + text.size()) {
    throw std::invalid_argument(std::string(flag) + ": not a number: " + std::string(text));
  }
  return out;
}

Options parseOptions(int argc, char** argv) {
  Options o;
  std::span<char*> args(argv + 1, static_cast<std::size_t>(argc - 1));
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string_view a = args[i];
    auto next = [&]() -> std::string_view {
      if (i + 1 >= args.size()) throw std::invalid_argument(std::string(a) + " needs a value");
      return args[++i];
    };
    if (a == "--module") {
      o.module = next();
    } else if (a == "--token") {
      o.token = next();
    } else if (a == "--pin") {
      o.pin = Pin(next());
    } else if (a == "--setup") {
      o.setupOnly = true;
    } else if (a == "--json") {
      o.json = true;
    } else if (a == "--quick") {
      o.limits.seconds = 0.5;
    } else if (a == "--duration") {
      o.limits.seconds = parseNumber<double>(a, next());
      if (!(o.limits.seconds > 0)) throw std::invalid_argument("--duration must be positive");
    } else if (a == "--ops") {
      o.limits.opsPerThread = parseNumber<std::uint64_t>(a, next());
    } else if (a == "--hold") {
      o.hold = true;
      o.holdSeconds = parseNumber<unsigned>(a, next());
    } else if (a == "--threads") {
      o.threads.clear();
      for (const auto& t : splitList(next())) {
        unsigned n = parseNumber<unsigned>("--threads", t);
        if (n == 0 || n > 256) throw std::invalid_argument("--threads: 1..256");
        o.threads.push_back(n);
      }
    } else if (a == "--cases") {
      o.cases = splitList(next());
    } else if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else {
      throw std::invalid_argument("unknown option " + std::string(a));
    }
  }
  if (o.module.empty()) throw std::invalid_argument("--module is required");
  if (o.pin.empty()) {
    if (const char* env = std::getenv("P11BENCH_PIN"); env != nullptr) o.pin = Pin(env);
  }
  if (o.pin.empty()) throw std::invalid_argument("--pin (or $P11BENCH_PIN) is required");
  return o;
}

std::string jsonString(std::string_view s) {
  std::string out = "\"";
  for (char ch : s) {
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (static_cast<unsigned char>(ch) < 0x20) {
      std::array<char, 8> esc{};
      std::snprintf(esc.data(), esc.size(), "\\u%04x", static_cast<unsigned>(ch));
      out += esc.data();
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

void printHuman(const Options& o, std::string_view library, const std::vector<Result>& results) {
  std::printf("module   %s\nlibrary  %.*s\ntoken    %s\n", o.module.c_str(),
              static_cast<int>(library.size()), library.data(), o.token.c_str());
  std::printf("%-14s %7s %10s %12s %10s %10s\n", "case", "threads", "ops", "ops/s", "p50 us",
              "p99 us");
  for (const Result& r : results) {
    std::printf("%-14s %7u %10llu %12.1f %10.1f %10.1f\n", r.name.c_str(), r.threads,
                static_cast<unsigned long long>(r.ops), r.opsPerSecond, r.p50Us, r.p99Us);
  }
}

void printJson(const Options& o, std::string_view library, const std::vector<Result>& results) {
  std::string out = "{\"module\":" + jsonString(o.module) + ",\"library\":" + jsonString(library) +
                    ",\"token\":" + jsonString(o.token);
  std::array<char, 256> num{};
  std::snprintf(num.data(), num.size(), ",\"duration_s\":%.3f,\"ops_per_thread\":%llu",
                o.limits.opsPerThread != 0 ? 0.0 : o.limits.seconds,
                static_cast<unsigned long long>(o.limits.opsPerThread));
  out += num.data();
  out += ",\"results\":[";
  for (std::size_t i = 0; i < results.size(); ++i) {
    const Result& r = results[i];
    std::snprintf(num.data(), num.size(),
                  ",\"threads\":%u,\"ops\":%llu,\"seconds\":%.4f,\"ops_per_s\":%.1f,"
                  "\"p50_us\":%.1f,\"p99_us\":%.1f}",
                  r.threads, static_cast<unsigned long long>(r.ops), r.seconds, r.opsPerSecond,
                  r.p50Us, r.p99Us);
    out += (i == 0 ? "{\"case\":" : ",{\"case\":") + jsonString(r.name) + num.data();
  }
  out += "]}\n";
  std::fputs(out.c_str(), stdout);
}

std::string libraryDescription(const Module& module) {
  CK_INFO info{};
  if (module.fns().C_GetInfo(&info) != CKR_OK) return "?";
  std::string desc = trimPadded(info.libraryDescription, sizeof info.libraryDescription);
  std::string maker = trimPadded(info.manufacturerID, sizeof info.manufacturerID);
  return desc + " (" + maker + ") " + std::to_string(info.libraryVersion.major) + "." +
         std::to_string(info.libraryVersion.minor);
}

std::vector<Case> buildCases(const Options& o, const Keys& keys) {
  Bytes hash = fakeHash();
  Bytes digestInfo(kSha256DigestInfo.begin(), kSha256DigestInfo.end());
  digestInfo.insert(digestInfo.end(), hash.begin(), hash.end());
  std::vector<Case> out;
  for (const std::string& name : o.cases) {
    Case c;
    c.name = name;
    if (name == "ecdsa-p256") {
      c.mechanism = CKM_ECDSA;
      c.key = keys.ec.priv;
      c.verifyKey = keys.ec.pub;
      c.input = hash;
    } else if (name == "rsa2048-pkcs") {
      c.mechanism = CKM_RSA_PKCS;
      c.key = keys.rsa.priv;
      c.verifyKey = keys.rsa.pub;
      c.input = digestInfo;
    } else if (name == "rsa2048-pss") {
      c.mechanism = CKM_RSA_PKCS_PSS;
      c.pss = true;
      c.key = keys.rsa.priv;
      c.verifyKey = keys.rsa.pub;
      c.input = hash;
    } else if (name == "getattr") {
      c.kind = OpKind::GetAttributes;
      c.key = keys.ec.pub;
    } else {
      throw std::invalid_argument("unknown case " + name);
    }
    out.push_back(std::move(c));
  }
  return out;
}

int run(Options& o) {
  Module module(o.module);
  std::string library = libraryDescription(module);
  CK_SLOT_ID slot = findSlot(module, o.token);

  // Login is per application: this session stays open (and logged in) for the whole run, and
  // every worker session opened later shares the login.
  Session main(module, slot, true);
  login(main, o.pin);
  Keys keys;
  keys.ec = findOrCreate(main, kEcLabel, true, true);
  keys.rsa = findOrCreate(main, kRsaLabel, false, true);
  if (o.setupOnly) {
    std::fprintf(stderr, "p11bench: keys ready on token '%s'\n", o.token.c_str());
    return 0;
  }

  std::vector<Case> cases = buildCases(o, keys);

  if (o.hold) {
    Worker w(cases.front(), Session(module, slot, false));
    for (int i = 0; i < 5; ++i) w.op();
    std::printf("ready %d\n", static_cast<int>(getpid()));
    std::fflush(stdout);
    std::this_thread::sleep_for(std::chrono::seconds(o.holdSeconds));
    return 0;
  }

  for (const Case& c : cases) {
    Worker w(c, Session(module, slot, false));
    if (auto why = w.verifyOnce()) {
      std::fprintf(stderr, "p11bench: %s: signature not checked (%s)\n", c.name.c_str(),
                   why->c_str());
    }
  }

  std::vector<Result> results;
  for (const Case& c : cases) {
    for (unsigned t : o.threads) {
      results.push_back(runCase(module, slot, c, t, o.limits));
      if (!o.json) {
        const Result& r = results.back();
        std::fprintf(stderr, "p11bench: %-13s %u thread(s): %.1f ops/s\n", r.name.c_str(),
                     r.threads, r.opsPerSecond);
      }
    }
  }
  if (o.json) {
    printJson(o, library, results);
  } else {
    printHuman(o, library, results);
  }
  return 0;
}

}  // namespace
}  // namespace dojang::bench

int main(int argc, char** argv) {
  dojang::bench::Options options;
  try {
    options = dojang::bench::parseOptions(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dojang-p11bench: %s\n%s", e.what(), dojang::bench::kUsage);
    return 2;
  }
  try {
    return dojang::bench::run(options);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dojang-p11bench: %s\n", e.what());
    return 1;
  }
}
