// dojang-p11bench: a generic PKCS#11 throughput and latency benchmark.
//
// Loads any PKCS#11 module by path, selects one token by label, logs in once and measures what
// real clients do on the hot path: C_SignInit + C_Sign into a preallocated buffer (ECDSA P-256,
// RSA-2048 PKCS#1 v1.5 and PSS) and C_GetAttributeValue, each with 1 and N threads, one session
// per thread. It is a tool, not a test: it reports numbers and never asserts on them.
//
// The same binary drives the three paths compared by bench/run.sh (SoftHSM directly, through
// dojangd, through p11-kit remoting), so every path pays exactly the same client-side costs.

#include <unistd.h>

#include <array>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "bench/p11.h"
#include "bench/workload.h"

namespace dojang::bench {
namespace {

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

// SHA-256 DigestInfo prefix (RFC 8017, section 9.2, note 1).
constexpr std::array<CK_BYTE, 19> kSha256DigestInfo{0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60,
                                                    0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                                                    0x01, 0x05, 0x00, 0x04, 0x20};

Bytes fakeHash() {
  Bytes hash(32);
  for (std::size_t i = 0; i < hash.size(); ++i) hash[i] = static_cast<CK_BYTE>(0xa5 ^ (i * 7));
  return hash;
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
