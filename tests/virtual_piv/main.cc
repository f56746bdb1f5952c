// dojang-virtual-piv: a PIV card (NIST SP 800-73-4) that plugs into vpcd, the virtual reader
// driver of vsmartcard, for dojang's integration tests. A test program, not product code.
//
// Connection: TCP to vpcd at 127.0.0.1:PORT (the reader config's CHANNELID). Every message both
// ways is a 2-byte big-endian length and a payload; one-byte payloads are vpcd's control codes
// (00 power off, 01 power on, 02 reset, 04 ATR, the only one answered); anything else is a command
// APDU answered with data + SW1 SW2. Connected = card inserted, closed = card removed. When vpcd
// goes away (pcscd stopped) the card keeps trying to connect, like a card left in its reader.
// TCP_QUICKACK is set before every recv: vpcd writes length and APDU separately, and delayed ACKs
// would stall every APDU by ~40 ms.
//
// Options:
//   --port N                        vpcd's port (required)
//   --state FILE                    card memory: loaded at start when it exists, written (FILE.tmp,
//                                   then rename) after every change; without it the card forgets
//   --apdu-log FILE                 appends "CLA INS P1 P2 len=N -> SW" per APDU received
//   --management-key-algorithm A    3des (default), aes128, aes192 or aes256, for a new card
//   --management-key HEX            for a new card; default 010203040506070801020304050607080102030405060708
//   --yubikey-version X.Y.Z         answer YubiKey's GET VERSION (FD), GET SERIAL (F8) and SET
//   --serial N                      MANAGEMENT KEY (FF) and use a YubiKey 5 ATR; either option turns
//                                   this on (defaults 5.4.3 and 10000001); otherwise those are 6D00
//   --exit-on-ins INS[:P2]          (hex) when a command with this INS (and P2) arrives, close the
//                                   socket without answering, save the state and exit 0: the card
//                                   pulled in the middle of an APDU exchange
//   --openpgp-applet                a second application (OpenPGP's AID D27600012401) another
//                                   program can select; PIV commands then answer 6D00 until PIV
//                                   is selected again, and its PIN verification is gone
// SIGTERM or SIGINT: the socket is closed (card pulled), the state saved, exit status 0.
//
// A new card: PIN 123456, PUK 12345678, 3 tries each, no keys, a CHUID with a random GUID, the
// discovery object (PIV PIN only). The PIV application is always selected (it is the only one).
// Commands (SP 800-73-4 Part 2 section 3; status words 9000, 61xx, 63Cx, 6700, 6982, 6983, 6A80,
// 6A82, 6A86, 6A88, 6D00, 6E00):
//   SELECT (A4 04 00) of the PIV AID or a prefix of it from A0 00 00 03 08: the APT template 61.
//   GET DATA (CB 3F FF, 5C tag): 7E discovery, 5FC102 CHUID, 5FC107 CCC, 5FC105/0A/0B/01 the
//     certificates of 9A/9C/9D/9E, 5FC10D..5FC120 retired 82..95, 5FC10C key history, and any
//     other object written; 6A82 when absent. Answers 53 {contents}.
//   PUT DATA (DB 3F FF, 5C tag 53 contents) for 5FC101..5FC123 and 5FFFxx; needs the management
//     key; 53 00 deletes.
//   VERIFY (20 00 80): 8 bytes PIN (FF padded); empty data gives 9000 when verified, else 63Cx, and
//     6983 when blocked; P1 FF ends the verification. A wrong PIN answers 63Cx with the tries left
//     (63C0 on the last one), then 6983.
//   CHANGE REFERENCE DATA (24 00 80|81): old || new. RESET RETRY COUNTER (2C 00 80): PUK || new PIN.
//   GENERAL AUTHENTICATE (87 alg ref, 7C template):
//     9B management key, algorithms 03 3DES, 08/0A/0C AES-128/192/256: mutual (80 -> witness;
//       80 witness + 81 challenge -> 82) and external (81 -> challenge; 82 response) authentication.
//     9A 9C 9D 9E 82..95: 82 00 + 81 input -> 82 result. RSA (06, 07): the raw private operation
//       (signatures padded by the host, and decryption). EC P-256 (11), P-384 (14): an ECDSA
//       signature in DER over the input as the hash. 82 00 + 85 point: ECDH, the shared x.
//       PIN policy: 9C always (one operation per VERIFY), 9E never, the others once per session;
//       GENERATE's AA tag overrides it. No key: 6A82; another algorithm in P1: 6A86.
//   GENERATE ASYMMETRIC KEY PAIR (47 00 slot, AC {80 alg [AA pin policy] [AB touch]}): needs the
//     management key; answers 7F49 {81 modulus, 82 exponent} or 7F49 {86 point}.
//   Chaining (CLA 10) on input; answers over 256 bytes to short APDUs come as 61xx and GET RESPONSE
//   (C0); extended APDUs get their whole answer at once.
// Security status (PIN verified, management key authenticated) ends with power off, reset and
// disconnection. Private keys exist only inside this process and its state file.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "tests/virtual_piv/card_channel.h"
#include "tests/virtual_piv/card_crypto.h"
#include "tests/virtual_piv/card_state.h"
#include "tests/virtual_piv/piv_applet.h"

namespace dojang::virtual_piv {
namespace {

constexpr std::string_view kDefaultManagementKey = "010203040506070801020304050607080102030405060708";

// A command that makes the card leave instead of answering (--exit-on-ins).
struct ExitTrigger {
  std::uint8_t ins = 0;
  std::optional<std::uint8_t> p2;
};

struct Options {
  std::uint16_t port = 0;
  std::filesystem::path stateFile;
  std::filesystem::path apduLog;
  std::uint8_t managementAlgorithm = algorithm::kTripleDes;
  std::string managementKeyHex{kDefaultManagementKey};
  std::optional<YubicoIdentity> yubico;
  std::optional<ExitTrigger> exitOn;
  bool openPgp = false;
};

[[noreturn]] void usage(const std::string& problem) {
  std::fprintf(stderr,
               "dojang-virtual-piv: %s\n"
               "usage: dojang-virtual-piv --port N [--state FILE] [--apdu-log FILE]\n"
               "       [--management-key-algorithm 3des|aes128|aes192|aes256] [--management-key HEX]\n"
               "       [--yubikey-version X.Y.Z] [--serial N] [--exit-on-ins INS[:P2]] [--openpgp-applet]\n",
               problem.c_str());
  std::exit(2);
}

Options parseOptions(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string_view name = argv[i];
    if (name == "--openpgp-applet") {
      options.openPgp = true;
      continue;
    }
    if (i + 1 >= argc) {
      usage("missing value for " + std::string(name));
    }
    const std::string value = argv[++i];
    if (name == "--port") {
      const long port = std::strtol(value.c_str(), nullptr, 10);
      if (port <= 0 || port > 65535) {
        usage("bad port " + value);
      }
      options.port = static_cast<std::uint16_t>(port);
    } else if (name == "--state") {
      options.stateFile = value;
    } else if (name == "--apdu-log") {
      options.apduLog = value;
    } else if (name == "--management-key-algorithm") {
      if (value == "3des") {
        options.managementAlgorithm = algorithm::kTripleDes;
      } else if (value == "aes128") {
        options.managementAlgorithm = algorithm::kAes128;
      } else if (value == "aes192") {
        options.managementAlgorithm = algorithm::kAes192;
      } else if (value == "aes256") {
        options.managementAlgorithm = algorithm::kAes256;
      } else {
        usage("unknown management key algorithm " + value);
      }
    } else if (name == "--management-key") {
      options.managementKeyHex = value;
    } else if (name == "--yubikey-version") {
      unsigned major = 0;
      unsigned minor = 0;
      unsigned patch = 0;
      if (std::sscanf(value.c_str(), "%u.%u.%u", &major, &minor, &patch) != 3 || major > 255 || minor > 255 ||
          patch > 255) {
        usage("bad version " + value);
      }
      YubicoIdentity identity = options.yubico.value_or(YubicoIdentity{});
      identity.major = static_cast<std::uint8_t>(major);
      identity.minor = static_cast<std::uint8_t>(minor);
      identity.patch = static_cast<std::uint8_t>(patch);
      options.yubico = identity;
    } else if (name == "--serial") {
      YubicoIdentity identity = options.yubico.value_or(YubicoIdentity{});
      identity.serial = static_cast<std::uint32_t>(std::strtoul(value.c_str(), nullptr, 10));
      options.yubico = identity;
    } else if (name == "--exit-on-ins") {
      unsigned ins = 0;
      unsigned p2 = 0;
      const int read = std::sscanf(value.c_str(), "%2x:%2x", &ins, &p2);
      if (read < 1) {
        usage("bad INS[:P2] " + value);
      }
      options.exitOn =
          ExitTrigger{static_cast<std::uint8_t>(ins),
                      read == 2 ? std::optional<std::uint8_t>(static_cast<std::uint8_t>(p2)) : std::nullopt};
    } else {
      usage("unknown option " + std::string(name));
    }
  }
  if (options.port == 0) {
    usage("--port is required");
  }
  return options;
}

// ISO 7816-3 8.2: TS, T0, TD1 (T=0 follows), TD2 (T=1), the historical bytes, TCK (XOR of all
// bytes after TS). The YubiKey form carries "YubiKey" in compact-TLV tag 5, which OpenSC and
// yubico-piv-tool look for.
Bytes answerToReset(bool yubikey) {
  Bytes atr;
  if (yubikey) {
    atr = {0x3B, 0xFD, 0x13, 0x00, 0x00, 0x81, 0x31, 0xFE, 0x15, 0x80, 0x73,
           0xC0, 0x21, 0xC0, 0x57, 0x59, 0x75, 0x62, 0x69, 0x4B, 0x65, 0x79};
  } else {
    const std::string history = "dojangPIV";
    atr = {0x3B, static_cast<std::uint8_t>(0x80 | history.size()), 0x80, 0x01};
    atr.insert(atr.end(), history.begin(), history.end());
  }
  std::uint8_t check = 0;
  for (std::size_t i = 1; i < atr.size(); ++i) {
    check ^= atr[i];
  }
  atr.push_back(check);
  return atr;
}

// Blocks until `length` bytes arrived; false when vpcd closed the connection.
bool receiveAll(int socket, std::uint8_t* buffer, std::size_t length) {
  std::size_t received = 0;
  while (received < length) {
    const int on = 1;
    ::setsockopt(socket, IPPROTO_TCP, TCP_QUICKACK, &on, sizeof on);  // the 40 ms pitfall
    const ssize_t n = ::recv(socket, buffer + received, length - received, 0);
    if (n <= 0) {
      return false;
    }
    received += static_cast<std::size_t>(n);
  }
  return true;
}

bool sendFrame(int socket, const Bytes& payload) {
  Bytes frame = {static_cast<std::uint8_t>(payload.size() >> 8), static_cast<std::uint8_t>(payload.size())};
  frame.insert(frame.end(), payload.begin(), payload.end());
  std::size_t sent = 0;
  while (sent < frame.size()) {
    const ssize_t n = ::send(socket, frame.data() + sent, frame.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) {
      return false;
    }
    sent += static_cast<std::size_t>(n);
  }
  return true;
}

// Connects to vpcd, retrying while it is not listening; -1 when a signal asked us to stop.
int connectToVpcd(std::uint16_t port, int signals) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  while (true) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && ::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0) {
      const int on = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
      return fd;
    }
    if (fd >= 0) {
      ::close(fd);
    }
    pollfd wait{signals, POLLIN, 0};
    if (::poll(&wait, 1, 20) > 0) {
      return -1;
    }
  }
}

enum class SessionEnd { Removed, Stop };

bool triggersExit(const std::optional<ExitTrigger>& trigger, const Bytes& apdu) {
  return trigger && apdu.size() >= 4 && apdu[1] == trigger->ins && (!trigger->p2 || apdu[3] == *trigger->p2);
}

// Serves one insertion: until vpcd closes the connection, a signal arrives or the exit trigger.
SessionEnd serve(int socket, int signals, CardChannel& channel, PivApplet& applet, const Bytes& atr,
                 const std::optional<ExitTrigger>& exitOn) {
  while (true) {
    pollfd waits[2] = {{socket, POLLIN, 0}, {signals, POLLIN, 0}};
    if (::poll(waits, 2, -1) < 0) {
      continue;
    }
    if ((waits[1].revents & POLLIN) != 0) {
      return SessionEnd::Stop;
    }
    std::uint8_t header[2];
    if (!receiveAll(socket, header, sizeof header)) {
      return SessionEnd::Removed;
    }
    Bytes payload((std::size_t{header[0]} << 8) | header[1]);
    if (!receiveAll(socket, payload.data(), payload.size())) {
      return SessionEnd::Removed;
    }
    if (payload.size() == 1) {
      switch (payload[0]) {
        case 0x00:  // power off
        case 0x01:  // power on
        case 0x02:  // reset
          applet.resetSecurityStatus();
          channel.reset();
          break;
        case 0x04:
          if (!sendFrame(socket, atr)) {
            return SessionEnd::Removed;
          }
          break;
        default:
          break;
      }
      continue;
    }
    if (triggersExit(exitOn, payload)) {
      return SessionEnd::Stop;  // unanswered: the reader sees the card vanish mid-exchange
    }
    if (!sendFrame(socket, channel.transmit(payload))) {
      return SessionEnd::Removed;
    }
  }
}

int run(const Options& options) {
  std::optional<CardState> loaded;
  if (!options.stateFile.empty()) {
    loaded = CardState::load(options.stateFile);
  }
  if (!loaded) {
    const auto key = parseHex(options.managementKeyHex);
    if (!key || key->size() != managementKeyLength(options.managementAlgorithm)) {
      usage("the management key does not fit its algorithm");
    }
    loaded = CardState::fresh(options.managementAlgorithm, *key);
  }
  CardState state = std::move(*loaded);
  auto persist = [&state, &options] {
    if (!options.stateFile.empty()) {
      state.save(options.stateFile);
    }
  };
  persist();  // a new card's random GUID must survive re-insertion too
  PivApplet applet(state, persist, options.yubico, options.openPgp);
  CardChannel channel(applet, options.apduLog);
  const Bytes atr = answerToReset(options.yubico.has_value());

  sigset_t stopSignals;
  sigemptyset(&stopSignals);
  sigaddset(&stopSignals, SIGTERM);
  sigaddset(&stopSignals, SIGINT);
  sigprocmask(SIG_BLOCK, &stopSignals, nullptr);
  const int signals = ::signalfd(-1, &stopSignals, SFD_CLOEXEC);
  if (signals < 0) {
    std::perror("signalfd");
    return 1;
  }
  while (true) {
    const int socket = connectToVpcd(options.port, signals);
    if (socket < 0) {
      break;
    }
    const SessionEnd end = serve(socket, signals, channel, applet, atr, options.exitOn);
    ::close(socket);
    applet.resetSecurityStatus();
    channel.reset();
    if (end == SessionEnd::Stop) {
      break;
    }
  }
  persist();
  ::close(signals);
  return 0;
}

}  // namespace
}  // namespace dojang::virtual_piv

int main(int argc, char** argv) {
  try {
    return dojang::virtual_piv::run(dojang::virtual_piv::parseOptions(argc, argv));
  } catch (const std::exception& error) {
    std::fprintf(stderr, "dojang-virtual-piv: %s\n", error.what());
    return 1;
  }
}
