// dojang-pivbench: the PIV card benchmark (a tool, not a test; bench/piv.sh runs it).
//
//   dojang-pivbench run --work DIR --dojangd PATH --module DOJANG_PKCS11 --opensc OPENSC_PKCS11
//                       [--reps N] [--signatures N]
//     builds the world (bench/piv_world.h), provisions the card through dojang, and measures:
//     hotplug latency (card in / out -> a blocked C_WaitForSlotEvent through dojang returns), a
//     client's cold start through dojang (warm daemon) and through OpenSC loaded directly, with
//     the APDUs each sends, and an ECDSA P-256 signature with 9A both ways. Prints a table.
//     $DOJANG_VIRTUAL_PIV names the card emulator.
//   dojang-pivbench list|sign --module PATH --apdu-log FILE [--pin PIN] [--signatures N]
//     one client run (bench/piv_client.h); `run` starts itself with these.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <future>
#include <map>
#include <optional>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "bench/piv_client.h"
#include "bench/piv_world.h"
#include "tests/support/dojangd_process.h"
#include "tests/support/run_command.h"

namespace dojang::bench {
namespace {

using Clock = std::chrono::steady_clock;
using Figures = std::map<std::string, double>;

struct RunOptions {
  PivWorldOptions world;
  std::string opensc;
  int reps = 7;
  int signatures = 40;
};

double millisecondsBetween(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double, std::milli>(to - from).count();
}

struct Spread {
  double median = 0;
  double min = 0;
  double max = 0;
};

Spread spread(std::vector<double> values) {
  if (values.empty()) {
    return {};
  }
  std::sort(values.begin(), values.end());
  const std::size_t n = values.size();
  const double median = n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
  return {median, values.front(), values.back()};
}

// "key=value key=value" from a client run.
Figures parseFigures(const std::string& line) {
  Figures figures;
  std::istringstream in(line);
  for (std::string pair; in >> pair;) {
    const auto equals = pair.find('=');
    if (equals != std::string::npos) {
      figures[pair.substr(0, equals)] = std::stod(pair.substr(equals + 1));
    }
  }
  return figures;
}

std::string selfExecutable() { return std::filesystem::read_symlink("/proc/self/exe").string(); }

Figures runClient(const std::vector<std::string>& arguments) {
  std::vector<std::string> argv = {selfExecutable()};
  argv.insert(argv.end(), arguments.begin(), arguments.end());
  test::CommandOptions options;
  options.timeout = std::chrono::seconds(60);
  const auto result = test::runCommand(argv, options);
  if (result.exitCode != 0) {
    throw std::runtime_error("client " + arguments.front() + " failed (exit " + std::to_string(result.exitCode) +
                             "): " + result.out + result.err);
  }
  return parseFigures(result.out);
}

// ---------------------------------------------------------------------------------------------
// Hotplug: dojang-pkcs11.so in this process, one thread blocked in C_WaitForSlotEvent and one in
// SCardGetStatusChange (to split pcscd's share from dojang's), then the card connects or leaves.

class Hotplug final {
 public:
  Hotplug(PivWorld& world, test::DojangModule& module) : m_world(world), m_module(module) {
    m_slot = waitForPivSlot(true);
  }

  [[nodiscard]] CK_SLOT_ID slot() const noexcept { return m_slot; }

  struct Sample {
    double dojangMs = 0;     // card change -> C_WaitForSlotEvent returned with the new state
    double pcscMs = 0;       // card change -> pcscd reported it (SCardGetStatusChange)
    double apdus = 0;        // APDUs the card got within 500 ms of an insertion
    bool tokenReady = true;  // C_GetTokenInfo worked right after the insertion event
  };

  Sample measure(bool insert) {
    drainEvents();
    m_world.clearApduLog();
    auto dojangEvent = std::async(std::launch::async, [this, insert] { return waitForEvent(insert); });
    auto pcscEvent = std::async(std::launch::async, [this, insert]() -> std::optional<Clock::time_point> {
      if (!test::waitForCard(m_world.readerName(), insert, std::chrono::seconds(15))) {
        return std::nullopt;
      }
      return Clock::now();
    });
    // Both waiters must be blocked before the change; there is no way to observe that, so wait.
    // pcscd looks at vpcd's reader every 400 ms (PCSCLITE_STATUS_POLL_RATE; vpcd has no event
    // callback), and this loop would otherwise run in step with that poll and measure one fixed
    // phase of it: a random part of the wait spreads the changes over the whole period.
    std::this_thread::sleep_for(std::chrono::milliseconds(250 + m_phase(m_random)));
    const auto changed = Clock::now();
    if (insert) {
      m_world.insertCard();
    } else {
      m_world.removeCard();
    }
    Sample sample;
    if (dojangEvent.wait_for(std::chrono::seconds(15)) != std::future_status::ready) {
      m_module.finalize();  // wakes the blocked C_WaitForSlotEvent
      (void)dojangEvent.get();
      throw std::runtime_error(std::string("no slot event within 15 s of the card being ") +
                               (insert ? "inserted" : "removed"));
    }
    const auto eventAt = dojangEvent.get();
    const auto pcscAt = pcscEvent.get();
    if (!eventAt || !pcscAt) {
      throw std::runtime_error("a hotplug waiter failed");
    }
    sample.dojangMs = millisecondsBetween(changed, *eventAt);
    sample.pcscMs = millisecondsBetween(changed, *pcscAt);
    if (insert) {
      CK_TOKEN_INFO info{};
      sample.tokenReady = m_module->C_GetTokenInfo(m_slot, &info) == CKR_OK;
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
      sample.apdus = static_cast<double>(m_world.apduCount());
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    return sample;
  }

 private:
  std::optional<Clock::time_point> waitForEvent(bool present) {
    for (;;) {
      CK_SLOT_ID slot = 0;
      const CK_RV rv = m_module->C_WaitForSlotEvent(0, &slot, nullptr);
      const auto at = Clock::now();
      if (rv != CKR_OK) {
        return std::nullopt;
      }
      CK_SLOT_INFO info{};
      if (slot == m_slot && m_module->C_GetSlotInfo(m_slot, &info) == CKR_OK &&
          ((info.flags & CKF_TOKEN_PRESENT) != 0) == present) {
        return at;
      }
    }
  }

  void drainEvents() {
    CK_SLOT_ID slot = 0;
    while (m_module->C_WaitForSlotEvent(CKF_DONT_BLOCK, &slot, nullptr) == CKR_OK) {
    }
  }

  // The slot of our reader (CK_SLOT_INFO.slotDescription starts with its name), once its token
  // is present.
  CK_SLOT_ID waitForPivSlot(bool present) {
    const auto deadline = Clock::now() + std::chrono::seconds(15);
    const std::string wanted = PivWorld::kReaderFriendlyName;
    while (Clock::now() < deadline) {
      CK_ULONG count = 0;
      if (m_module->C_GetSlotList(CK_FALSE, nullptr, &count) == CKR_OK) {
        std::vector<CK_SLOT_ID> slots(count);
        if (m_module->C_GetSlotList(CK_FALSE, slots.data(), &count) == CKR_OK) {
          for (CK_ULONG i = 0; i < count; ++i) {
            CK_SLOT_INFO info{};
            if (m_module->C_GetSlotInfo(slots[i], &info) != CKR_OK) {
              continue;
            }
            const std::string description(reinterpret_cast<const char*>(info.slotDescription),
                                          sizeof info.slotDescription);
            if (description.rfind(wanted, 0) == 0 && ((info.flags & CKF_TOKEN_PRESENT) != 0) == present) {
              return slots[i];
            }
          }
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    throw std::runtime_error("dojang never showed a slot for the reader " + wanted);
  }

  PivWorld& m_world;
  test::DojangModule& m_module;
  CK_SLOT_ID m_slot = 0;
  std::mt19937 m_random{std::random_device{}()};
  std::uniform_int_distribution<int> m_phase{0, 399};
};

// ---------------------------------------------------------------------------------------------
// The report.

std::string number(double value) {
  char text[32];
  std::snprintf(text, sizeof text, value < 10 ? "%.2f" : "%.1f", value);
  return text;
}

std::string ms(double value) { return number(value) + " ms"; }

std::string withSpread(const Spread& s) { return ms(s.median) + " [" + number(s.min) + ".." + number(s.max) + "]"; }

std::string ratio(double numerator, double denominator) {
  if (denominator <= 0) {
    return "-";
  }
  char text[32];
  std::snprintf(text, sizeof text, "%.1fx", numerator / denominator);
  return text;
}

std::string verdict(bool pass) { return pass ? "PASS" : "FAIL"; }

int run(const RunOptions& options) {
  std::fprintf(stderr, "== waiting for /tmp/dojang-pcscd.lock (other pcscd users)\n");
  PivWorld world(options.world);
  test::DojangModule inProcess(options.world.module);
  if (inProcess.initialize() != CKR_OK) {
    throw std::runtime_error("C_Initialize of dojang-pkcs11.so failed");
  }
  Hotplug hotplug(world, inProcess);
  std::fprintf(stderr, "== provisioning the card through dojang (slot %lu): EC P-256 in 9A, RSA-2048 in 9C\n",
               hotplug.slot());
  world.provision(hotplug.slot());

  std::fprintf(stderr, "== hotplug: %d removals and insertions\n", options.reps);
  std::vector<double> insertDojang, insertPcsc, insertShare, removeDojang, removePcsc, removeShare, insertApdus;
  int tokenNotReady = 0;
  for (int i = 0; i < options.reps; ++i) {
    const auto out = hotplug.measure(false);
    removeDojang.push_back(out.dojangMs);
    removePcsc.push_back(out.pcscMs);
    removeShare.push_back(out.dojangMs - out.pcscMs);
    const auto in = hotplug.measure(true);
    insertDojang.push_back(in.dojangMs);
    insertPcsc.push_back(in.pcscMs);
    insertShare.push_back(in.dojangMs - in.pcscMs);
    insertApdus.push_back(in.apdus);
    tokenNotReady += in.tokenReady ? 0 : 1;
  }

  std::fprintf(stderr, "== cold starts: %d each through dojang and OpenSC (one warm-up each first)\n",
               options.reps);
  const auto listArgs = [&world](const std::string& module) {
    return std::vector<std::string>{"list", "--module", module, "--apdu-log", world.apduLog().string()};
  };
  const std::vector<std::string> modules = {options.world.module, options.opensc};
  std::map<std::string, std::vector<Figures>> cold;
  for (const auto& path : modules) {
    (void)runClient(listArgs(path));
  }
  for (int i = 0; i < options.reps; ++i) {
    for (const auto& path : modules) {
      cold[path].push_back(runClient(listArgs(path)));
    }
  }
  const auto column = [&cold](const std::string& path, const std::string& key) {
    std::vector<double> values;
    for (const auto& figures : cold[path]) {
      values.push_back(figures.count(key) != 0 ? figures.at(key) : 0);
    }
    return values;
  };
  const auto coldMs = [&column](const std::string& path, const std::string& key) {
    auto values = column(path, key);
    for (auto& value : values) {
      value /= 1000;
    }
    return spread(values);
  };

  std::fprintf(stderr, "== signatures: %d ECDSA P-256 with 9A each through dojang and OpenSC\n", options.signatures);
  const auto signArgs = [&](const std::string& module) {
    return std::vector<std::string>{"sign", "--module", module, "--apdu-log", world.apduLog().string(), "--pin",
                                    PivWorld::kPin, "--signatures", std::to_string(options.signatures)};
  };
  const Figures signDojang = runClient(signArgs(options.world.module));
  const Figures signOpensc = runClient(signArgs(options.opensc));

  // ---- the table
  const auto& dj = options.world.module;
  const auto& sc = options.opensc;
  const Spread ins = spread(insertDojang);
  const Spread rem = spread(removeDojang);
  const Spread listDojang = coldMs(dj, "list_us");
  const Spread listOpensc = coldMs(sc, "list_us");
  const Spread loadDojang = coldMs(dj, "load_us");
  const Spread loadOpensc = coldMs(sc, "load_us");
  const Spread initDojang = coldMs(dj, "init_us");
  const Spread initOpensc = coldMs(sc, "init_us");
  const auto afterInit = [&column](const std::string& path) {
    const auto list = column(path, "list_us");
    const auto init = column(path, "init_us");
    std::vector<double> values;
    for (std::size_t i = 0; i < list.size(); ++i) {
      values.push_back((list[i] - init[i]) / 1000);
    }
    return spread(values);
  };
  const Spread restDojang = afterInit(dj);
  const Spread restOpensc = afterInit(sc);
  const Spread apdusDojang = spread(column(dj, "apdus"));
  const Spread apdusOpensc = spread(column(sc, "apdus"));
  const double signDj = signDojang.at("sign_us_median") / 1000;
  const double signSc = signOpensc.at("sign_us_median") / 1000;
  const auto objects = [&cold](const std::string& path) {
    const auto& f = cold[path].front();
    char text[96];
    std::snprintf(text, sizeof text, "%.0f token, %.0f certs, %.0f public, %.0f private keys", f.at("tokens"),
                  f.at("certs"), f.at("pubkeys"), f.at("privkeys"));
    return std::string(text);
  };

  std::printf("\nPIV card: dojang-virtual-piv behind pcscd + vpcd; %d repetitions; medians [min..max]\n",
              options.reps);
  std::printf("objects listed: dojang %s; OpenSC %s\n\n", objects(dj).c_str(), objects(sc).c_str());
  std::printf("%-46s | %-24s | %-24s | %s\n", "measure", "dojang", "OpenSC direct", "ratio / added");
  std::printf("%s\n", std::string(118, '-').c_str());
  std::printf("%-46s | %-24s | %-24s | %s\n", "insertion -> C_WaitForSlotEvent returns", withSpread(ins).c_str(), "-",
              "-");
  std::printf("%-46s | %-24s | %-24s | %s\n", "  of which pcscd + vpcd (SCardGetStatusChange)",
              withSpread(spread(insertPcsc)).c_str(), "-", "-");
  std::printf("%-46s | %-24s | %-24s | %s\n", "  dojang's own share (event - pcscd)",
              withSpread(spread(insertShare)).c_str(), "-", "-");
  std::printf("%-46s | %-24.0f | %-24s | %s\n", "  APDUs dojangd sends reading the new card", spread(insertApdus).median,
              "-", "-");
  std::printf("%-46s | %-24s | %-24s | %s\n", "removal -> C_WaitForSlotEvent returns", withSpread(rem).c_str(), "-",
              "-");
  std::printf("%-46s | %-24s | %-24s | %s\n", "  of which pcscd + vpcd (SCardGetStatusChange)",
              withSpread(spread(removePcsc)).c_str(), "-", "-");
  std::printf("%-46s | %-24s | %-24s | %s\n", "  dojang's own share (event - pcscd)",
              withSpread(spread(removeShare)).c_str(), "-", "-");
  std::printf("%-46s | %-24s | %-24s | %s\n", "cold start: C_Initialize .. attributes listed",
              withSpread(listDojang).c_str(), withSpread(listOpensc).c_str(),
              (ratio(listOpensc.median, listDojang.median) + " faster").c_str());
  std::printf("%-46s | %-24.0f | %-24.0f | %s\n", "  APDUs to the card (median)", apdusDojang.median,
              apdusOpensc.median, "-");
  std::printf("%-46s | %-24s | %-24s | %s\n", "  of which C_Initialize", withSpread(initDojang).c_str(),
              withSpread(initOpensc).c_str(), "-");
  std::printf("%-46s | %-24s | %-24s | %s\n", "  the rest (slots, objects, attributes)", withSpread(restDojang).c_str(),
              withSpread(restOpensc).c_str(), (ratio(restOpensc.median, restDojang.median) + " faster").c_str());
  std::printf("%-46s | %-24s | %-24s | %s\n", "  before it: dlopen + C_GetFunctionList", withSpread(loadDojang).c_str(),
              withSpread(loadOpensc).c_str(), "-");
  std::printf("%-46s | %-24s | %-24s | %s\n", "ECDSA P-256 signature with 9A (after login)",
              withSpread({signDj, signDojang.at("sign_us_min") / 1000, signDojang.at("sign_us_max") / 1000}).c_str(),
              withSpread({signSc, signOpensc.at("sign_us_min") / 1000, signOpensc.at("sign_us_max") / 1000}).c_str(),
              (ratio(signDj, signSc) + ", " + (signDj >= signSc ? "+" : "") + ms(signDj - signSc)).c_str());
  std::printf("%-46s | %-24.2f | %-24.2f | %s\n", "  APDUs per signature", signDojang.at("apdus_per_signature"),
              signOpensc.at("apdus_per_signature"), "-");
  if (tokenNotReady > 0) {
    std::printf("note: %d insertion event(s) came before C_GetTokenInfo worked\n", tokenNotReady);
  }
  std::printf("\ntargets (reported, not asserted):\n");
  std::printf("  %-58s %10s  %s\n", "insertion -> event <= 1 s", ms(ins.median).c_str(), verdict(ins.median <= 1000).c_str());
  std::printf("  %-58s %10s  %s\n", "insertion -> event <= 100 ms (aim)", ms(ins.median).c_str(),
              verdict(ins.median <= 100).c_str());
  std::printf("  %-58s %10.0f  %s\n", "warm dojang cold start sends 0 APDUs (max over runs)", apdusDojang.max,
              verdict(apdusDojang.max == 0).c_str());
  std::printf("  %-58s %10s  %s\n", "warm dojang cold start >= 10x faster than OpenSC",
              ratio(listOpensc.median, listDojang.median).c_str(),
              verdict(listDojang.median * 10 <= listOpensc.median).c_str());
  return 0;
}

// ---------------------------------------------------------------------------------------------

[[noreturn]] void usage(const std::string& problem) {
  std::fprintf(stderr,
               "dojang-pivbench: %s\n"
               "usage: dojang-pivbench run --work DIR --dojangd PATH --module PATH --opensc PATH [--reps N] "
               "[--signatures N]\n"
               "       dojang-pivbench list|sign --module PATH --apdu-log FILE [--pin PIN] [--signatures N]\n",
               problem.c_str());
  std::exit(2);
}

int positive(const std::string& text) {
  const int value = std::atoi(text.c_str());
  if (value <= 0) {
    usage("not a positive number: " + text);
  }
  return value;
}

int dispatch(int argc, char** argv) {
  if (argc < 2) {
    usage("no command");
  }
  const std::string command = argv[1];
  RunOptions runOptions;
  PivClientOptions clientOptions;
  for (int i = 2; i < argc; i += 2) {
    const std::string name = argv[i];
    if (i + 1 >= argc) {
      usage("missing value for " + name);
    }
    const std::string value = argv[i + 1];
    if (name == "--work") {
      runOptions.world.work = value;
    } else if (name == "--dojangd") {
      runOptions.world.dojangd = value;
    } else if (name == "--module") {
      runOptions.world.module = value;
      clientOptions.module = value;
    } else if (name == "--opensc") {
      runOptions.opensc = value;
    } else if (name == "--reps") {
      runOptions.reps = positive(value);
    } else if (name == "--signatures") {
      runOptions.signatures = positive(value);
      clientOptions.signatures = runOptions.signatures;
    } else if (name == "--apdu-log") {
      clientOptions.apduLog = value;
    } else if (name == "--pin") {
      clientOptions.pin = value;
    } else {
      usage("unknown option " + name);
    }
  }
  if (command == "list" || command == "sign") {
    if (clientOptions.module.empty() || clientOptions.apduLog.empty()) {
      usage(command + " needs --module and --apdu-log");
    }
    return command == "list" ? runListClient(clientOptions) : runSignClient(clientOptions);
  }
  if (command == "run") {
    if (runOptions.world.work.empty() || runOptions.world.dojangd.empty() || runOptions.world.module.empty() ||
        runOptions.opensc.empty()) {
      usage("run needs --work, --dojangd, --module and --opensc");
    }
    return run(runOptions);
  }
  usage("unknown command " + command);
}

}  // namespace
}  // namespace dojang::bench

int main(int argc, char** argv) {
  try {
    return dojang::bench::dispatch(argc, argv);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "dojang-pivbench: %s\n", error.what());
    return 1;
  }
}
