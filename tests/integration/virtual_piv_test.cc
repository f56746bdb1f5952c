// The virtual PIV card (tests/virtual_piv) behind the real pcscd and vpcd, proven against
// third-party tools rather than against itself: opensc-tool and pcsc-lite see insertion and
// removal, yubico-piv-tool generates keys and writes certificates, OpenSC's PKCS#11 module and
// ykcs11 list the objects and sign, and openssl verifies every signature against the certificate.
// The card's state survives being pulled and inserted again; its APDU log counts what tools send.
#include <winscard.h>

#include <catch2/catch.hpp>

#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/pcscd_process.h"
#include "tests/support/run_command.h"
#include "tests/support/temp_dir.h"

namespace {

using dojang::test::CommandResult;
using dojang::test::PcscdLock;
using dojang::test::PcscdProcess;
using dojang::test::TempDir;
using dojang::test::VirtualPivCard;

constexpr const char* kOpenscModule = "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so";
constexpr const char* kYkcs11Module = "/usr/lib/x86_64-linux-gnu/libykcs11.so";

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// pcscd, the card and a directory for files; the tools get a HOME of their own so OpenSC's
// cache never carries one test's card into another.
struct Bench {
  explicit Bench(const std::string& readerLabel) : pcscd(dir.path(), readerLabel) {}

  CommandResult run(const std::vector<std::string>& argv) const {
    auto result = dojang::test::runCommand(argv, {{"HOME", (dir / "home").string()},
                                                  {"XDG_CACHE_HOME", (dir / "cache").string()}});
    UNSCOPED_INFO("$ " << joined(argv) << "\nexit " << result.exitCode << "\n" << result.out << result.err);
    return result;
  }
  CommandResult piv(std::vector<std::string> arguments) const {
    arguments.insert(arguments.begin(), {"yubico-piv-tool", "-r", pcscd.friendlyName()});
    return run(arguments);
  }
  void insert(const std::vector<std::string>& extra = {}) {
    card.start(pcscd.port(), dir / "card.state", extra);
    REQUIRE(card.waitUntilPresent(pcscd.readerName()));
  }
  void pull() {
    REQUIRE(card.stop() == 0);
    REQUIRE(card.waitUntilAbsent(pcscd.readerName()));
  }
  std::string path(const std::string& name) const { return (dir / name).string(); }

  static std::string joined(const std::vector<std::string>& argv) {
    std::string text;
    for (const auto& argument : argv) {
      text += argument + " ";
    }
    return text;
  }

  PcscdLock lock;
  TempDir dir{"dojang-vpiv-"};
  PcscdProcess pcscd;
  VirtualPivCard card{dir.path()};
};

// A CA made by openssl, and a certificate from it for a public key that only the card holds
// (the card never signs its own certificate here: yubico-piv-tool 2.2's selfsign cannot use
// OpenSSL 3).
void makeCa(const Bench& bench) {
  REQUIRE(bench.run({"openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out",
                     bench.path("ca.key")}).exitCode == 0);
  REQUIRE(bench.run({"openssl", "req", "-new", "-x509", "-key", bench.path("ca.key"), "-subj", "/CN=vpiv test CA",
                     "-days", "30", "-out", bench.path("ca.pem")}).exitCode == 0);
}

std::string certifyCardKey(const Bench& bench, const std::string& slot, const std::string& publicKeyPem) {
  const std::string request = bench.path("req-" + slot + ".csr");
  const std::string certificate = bench.path("cert-" + slot + ".pem");
  REQUIRE(bench.run({"openssl", "req", "-new", "-key", bench.path("ca.key"), "-subj", "/CN=card slot " + slot,
                     "-out", request}).exitCode == 0);
  REQUIRE(bench.run({"openssl", "x509", "-req", "-in", request, "-CA", bench.path("ca.pem"), "-CAkey",
                     bench.path("ca.key"), "-CAcreateserial", "-force_pubkey", publicKeyPem, "-days", "30",
                     "-out", certificate}).exitCode == 0);
  return certificate;
}

// Generates a key in `slot` with yubico-piv-tool (default management key) and imports a
// certificate for it; returns the certificate's file.
std::string provisionSlot(const Bench& bench, const std::string& slot, const std::string& algorithm) {
  const std::string publicKey = bench.path("pub-" + slot + ".pem");
  const auto generated = bench.piv({"-a", "generate", "-s", slot, "-A", algorithm, "-o", publicKey});
  REQUIRE(generated.exitCode == 0);
  const std::string certificate = certifyCardKey(bench, slot, publicKey);
  REQUIRE(bench.piv({"-a", "import-certificate", "-s", slot, "-i", certificate}).exitCode == 0);
  return certificate;
}

// Signs data.txt through a PKCS#11 module and checks the signature with openssl against the
// certificate's public key.
void signAndVerify(const Bench& bench, const std::string& module, const std::string& id, const std::string& mechanism,
                   const std::string& certificate, const std::vector<std::string>& verifyOptions) {
  dojang::test::writeFile(bench.dir / "data.txt", "signed by the virtual PIV card\n");
  const std::string signature = bench.path("sig-" + id + "-" + mechanism);
  std::vector<std::string> sign = {"pkcs11-tool", "--module", module, "--login", "--pin", "123456", "--sign",
                                   "-m", mechanism, "--id", id, "-o", signature};
  if (mechanism == "ECDSA") {
    // Raw ECDSA signs a hash: hash first, and ask for the DER form openssl reads.
    const auto digest = bench.run({"openssl", "dgst", "-sha256", "-binary", "-out", bench.path("data.sha256"),
                                   bench.path("data.txt")});
    REQUIRE(digest.exitCode == 0);
    sign.insert(sign.end(), {"-i", bench.path("data.sha256"), "--signature-format", "openssl"});
  } else {
    sign.insert(sign.end(), {"-i", bench.path("data.txt")});
  }
  REQUIRE(bench.run(sign).exitCode == 0);
  const std::string publicKey = bench.path("certpub-" + id + ".pem");
  REQUIRE(bench.run({"openssl", "x509", "-in", certificate, "-pubkey", "-noout", "-out", publicKey}).exitCode == 0);
  std::vector<std::string> verify = {"openssl", "dgst", "-sha256", "-verify", publicKey, "-signature", signature};
  verify.insert(verify.end(), verifyOptions.begin(), verifyOptions.end());
  verify.push_back(bench.path("data.txt"));
  const auto verified = bench.run(verify);
  REQUIRE(verified.exitCode == 0);
  REQUIRE(contains(verified.out, "Verified OK"));
}

// opensc-tool's number for a reader, from --list-readers.
std::string readerNumber(const std::string& listing, const std::string& readerName) {
  std::istringstream lines(listing);
  for (std::string line; std::getline(lines, line);) {
    if (contains(line, readerName)) {
      return line.substr(0, line.find_first_of(" \t"));
    }
  }
  return {};
}

}  // namespace

TEST_CASE("opensc-tool and pcsc-lite see the virtual card inserted and pulled", "[virtual_piv]") {
  Bench bench("dojang vpiv reader");
  const auto empty = bench.run({"opensc-tool", "--list-readers"});
  REQUIRE(contains(empty.out, bench.pcscd.readerName()));
  REQUIRE(dojang::test::waitForCard(bench.pcscd.readerName(), false, std::chrono::seconds(5)));

  bench.insert();
  const auto listing = bench.run({"opensc-tool", "--list-readers"});
  const std::string number = readerNumber(listing.out, bench.pcscd.readerName());
  REQUIRE(!number.empty());
  const auto atr = bench.run({"opensc-tool", "-r", number, "--atr"});
  REQUIRE(atr.exitCode == 0);
  // 3B 89 80 01 "dojangPIV" TCK
  CHECK(contains(atr.out, "3b:89:80:01:64:6f:6a:61:6e:67:50:49:56"));

  bench.pull();
  const auto gone = bench.run({"opensc-tool", "-r", number, "--atr"});
  CHECK(gone.exitCode != 0);
  bench.insert();
  CHECK(bench.run({"opensc-tool", "-r", number, "--atr"}).exitCode == 0);

  // pcscd restarted under a card left in its reader: the card connects again by itself.
  bench.pcscd.restart();
  CHECK(bench.card.waitUntilPresent(bench.pcscd.readerName()));
  CHECK(bench.run({"opensc-tool", "-r", number, "--atr"}).exitCode == 0);
}

TEST_CASE("yubico-piv-tool provisions the card; OpenSC lists and signs ECDSA, PKCS#1 and PSS; "
          "the state survives re-insertion", "[virtual_piv]") {
  Bench bench("dojang vpiv piv");
  bench.insert();
  makeCa(bench);
  const std::string ecCertificate = provisionSlot(bench, "9a", "ECCP256");
  const std::string rsaCertificate = provisionSlot(bench, "9c", "RSA2048");

  const auto status = bench.piv({"-a", "status"});
  REQUIRE(status.exitCode == 0);
  CHECK(contains(status.out, "Slot 9a:"));
  CHECK(contains(status.out, "ECCP256"));
  CHECK(contains(status.out, "Slot 9c:"));
  CHECK(contains(status.out, "RSA2048"));
  CHECK(contains(status.out, "CN=card slot 9a"));
  CHECK(contains(status.out, "PIN tries left:\t3"));

  CHECK(bench.piv({"-a", "verify-pin", "-P", "123456"}).exitCode == 0);
  const auto wrong = bench.piv({"-a", "verify-pin", "-P", "654321"});
  CHECK(wrong.exitCode != 0);
  CHECK(contains(wrong.err + wrong.out, "2 tries left"));
  CHECK(contains(bench.piv({"-a", "status"}).out, "PIN tries left:\t2"));
  // A management key other than the card's is refused, and nothing is generated.
  const auto refused = bench.piv({"-k", "0102030405060708010203040506070801020304050607ff", "-a", "generate", "-s",
                                  "9d", "-A", "ECCP256"});
  CHECK(refused.exitCode != 0);

  // yubico-piv-tool's own signature test, then OpenSC's module.
  CHECK(bench.piv({"-a", "verify-pin", "-P", "123456", "-a", "test-signature", "-s", "9a", "-i", ecCertificate})
            .exitCode == 0);
  const auto objects = bench.run({"pkcs11-tool", "--module", kOpenscModule, "-O"});
  REQUIRE(objects.exitCode == 0);
  CHECK(contains(objects.out, "CN=card slot 9a"));
  CHECK(contains(objects.out, "CN=card slot 9c"));
  CHECK(contains(objects.out, "EC_POINT 256 bits"));
  CHECK(contains(objects.out, "RSA 2048 bits"));
  signAndVerify(bench, kOpenscModule, "01", "ECDSA", ecCertificate, {});
  signAndVerify(bench, kOpenscModule, "02", "SHA256-RSA-PKCS", rsaCertificate, {});
  signAndVerify(bench, kOpenscModule, "02", "SHA256-RSA-PKCS-PSS", rsaCertificate,
                {"-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:-1"});

  // Pulled and inserted again (a new process on the same state file): keys, certificates and
  // the PIN counter are still there.
  bench.pull();
  bench.insert();
  CHECK(contains(bench.piv({"-a", "status"}).out, "CN=card slot 9c"));
  CHECK(bench.piv({"-a", "verify-pin", "-P", "123456", "-a", "test-signature", "-s", "9c", "-i", rsaCertificate})
            .exitCode == 0);
  signAndVerify(bench, kOpenscModule, "01", "ECDSA", ecCertificate, {});
}

TEST_CASE("a blocked PIN is unblocked with the PUK; PIN and PUK changes persist", "[virtual_piv]") {
  Bench bench("dojang vpiv pins");
  bench.insert();
  CHECK(contains(bench.piv({"-a", "verify-pin", "-P", "000000"}).err, "2 tries left"));
  CHECK(contains(bench.piv({"-a", "verify-pin", "-P", "000000"}).err, "1 tries left"));
  bench.piv({"-a", "verify-pin", "-P", "000000"});
  const auto blocked = bench.piv({"-a", "verify-pin", "-P", "123456"});
  CHECK(blocked.exitCode != 0);
  CHECK(contains(bench.piv({"-a", "status"}).out, "PIN tries left:\t0"));

  CHECK(bench.piv({"-a", "unblock-pin", "-P", "12345678", "-N", "24682468"}).exitCode == 0);
  CHECK(bench.piv({"-a", "verify-pin", "-P", "24682468"}).exitCode == 0);
  CHECK(bench.piv({"-a", "change-pin", "-P", "24682468", "-N", "135790"}).exitCode == 0);
  CHECK(bench.piv({"-a", "change-puk", "-P", "12345678", "-N", "87654321"}).exitCode == 0);
  CHECK(bench.piv({"-a", "unblock-pin", "-P", "12345678", "-N", "111111"}).exitCode != 0);  // old PUK

  bench.pull();
  bench.insert();
  CHECK(bench.piv({"-a", "verify-pin", "-P", "135790"}).exitCode == 0);
  CHECK(contains(bench.piv({"-a", "status"}).out, "PIN tries left:\t3"));
}

TEST_CASE("ykcs11 serves the card in a reader named like a YubiKey", "[virtual_piv]") {
  Bench bench("Yubico YubiKey OTP+FIDO+CCID");
  bench.insert({"--yubikey-version", "5.4.3", "--serial", "12345678"});
  CHECK(contains(bench.piv({"-a", "version"}).out, "5.4.3"));
  CHECK(contains(bench.piv({"-a", "status"}).out, "12345678"));
  makeCa(bench);
  const std::string certificate = provisionSlot(bench, "9a", "ECCP256");

  const auto slots = bench.run({"pkcs11-tool", "--module", kYkcs11Module, "-L"});
  REQUIRE(slots.exitCode == 0);
  CHECK(contains(slots.out, "Yubico YubiKey OTP+FIDO+CCID"));
  CHECK(contains(slots.out, "12345678"));
  const auto objects = bench.run({"pkcs11-tool", "--module", kYkcs11Module, "-O"});
  REQUIRE(objects.exitCode == 0);
  CHECK(contains(objects.out, "CN=card slot 9a"));
  signAndVerify(bench, kYkcs11Module, "01", "ECDSA", certificate, {});
}

TEST_CASE("the APDU log counts exactly what a client sends, GET RESPONSE and chains included", "[virtual_piv]") {
  Bench bench("dojang vpiv count");
  bench.insert();

  // yubico-piv-tool --verbose=2 prints each APDU it sends as a "> " line.
  bench.card.clearApduLog();
  const auto status = bench.piv({"--verbose=2", "-a", "status"});
  REQUIRE(status.exitCode == 0);
  std::size_t sent = 0;
  std::istringstream lines(status.err);
  for (std::string line; std::getline(lines, line);) {
    sent += line.rfind("> ", 0) == 0 ? 1 : 0;
  }
  CHECK(sent > 3);
  CHECK(bench.card.apduCount() == sent);

  // Generating an RSA key answers 7F49 with more than 256 bytes: one GET RESPONSE more.
  bench.card.clearApduLog();
  const auto generated = bench.piv({"--verbose=2", "-a", "generate", "-s", "9d", "-A", "RSA2048"});
  REQUIRE(generated.exitCode == 0);
  std::size_t generateSent = 0;
  std::istringstream generateLines(generated.err);
  for (std::string line; std::getline(generateLines, line);) {
    generateSent += line.rfind("> ", 0) == 0 ? 1 : 0;
  }
  const auto log = bench.card.apduLines();
  CHECK(log.size() == generateSent);
  bool sawGetResponse = false;
  for (const auto& line : log) {
    sawGetResponse = sawGetResponse || line.rfind("00 C0 00 00", 0) == 0;
  }
  CHECK(sawGetResponse);
}
