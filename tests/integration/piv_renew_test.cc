// `dojang enroll` and `dojang renew` on a PIV card end to end: the virtual PIV card behind the real
// pcscd and vpcd, a real dojangd serving it through the native PIV driver, dojang-ca on 127.0.0.1,
// and every token access through dojang-pkcs11.so. The renewal engine is the same as for SoftHSM;
// the PIV driver's slot overlay carries its CKA_IDs, labels and CKA_LOCAL, and frees key slots for
// its deletions. Checked with pkcs11-tool, openssl, and OpenSC's own PIV driver with dojangd
// stopped.
#include <catch2/catch.hpp>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "tests/ca/ca_test_support.h"
#include "tests/integration/renewal_fixture.h"
#include "tests/support/dojangd_process.h"
#include "tests/support/pcscd_process.h"
#include "tests/support/run_command.h"
#include "tests/support/softhsm_token.h"
#include "tests/support/temp_dir.h"

namespace test = dojang::test;
namespace catest = dojang::ca::test;

namespace {

using dojang::test::readFile;

constexpr const char* kTokenLabel = "PIV card";
constexpr const char* kPin = "123456";
constexpr const char* kLabel = "signkey";
constexpr const char* kProfile = "signkorea-general-personal";
constexpr const char* kOpenscModule = "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so";
constexpr const char* kReader = "dojang PIV renewal test";

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// pkcs11-tool --list-objects, one entry per object: its header line ("Private Key Object; EC")
// and its indented attribute lines.
std::vector<std::string> objectBlocks(const std::string& listing) {
  std::vector<std::string> blocks;
  std::size_t at = 0;
  while (at < listing.size()) {
    const auto end = listing.find('\n', at);
    const std::string line = listing.substr(at, end == std::string::npos ? std::string::npos : end - at);
    if (!line.empty() && line[0] != ' ') {
      blocks.emplace_back();
    }
    if (!blocks.empty()) {
      blocks.back() += line + "\n";
    }
    at = end == std::string::npos ? listing.size() : end + 1;
  }
  return blocks;
}

// The objects of `kind` ("Private Key Object") whose block holds `text` ("ID:         ab12...\n").
std::vector<std::string> objectsWith(const std::string& listing, const std::string& kind,
                                     const std::string& text) {
  std::vector<std::string> found;
  for (const auto& block : objectBlocks(listing)) {
    if (block.rfind(kind, 0) == 0 && contains(block, text)) {
      found.push_back(block);
    }
  }
  return found;
}

// The hex CKA_ID in an object's block.
std::string idOf(const std::string& block) {
  const auto at = block.find("ID:         ");
  return at == std::string::npos ? "" : block.substr(at + 12, block.find('\n', at) - at - 12);
}

// An AES-128 management key the card is made with, instead of the well-known default.
constexpr const char* kManagementKey = "8a2b9c0d1e3f405162738495a6b7c8d9";

std::string pivConfig(const std::filesystem::path& dir, bool ownManagementKey) {
  std::string config = std::string("[piv]\nenabled = true\nreaders = [\"") + kReader + "*\"]\n";
  if (ownManagementKey) {
    config += std::string("[[piv.card]]\nreader = \"") + kReader + "*\"\nmanagement_key_file = \"" +
              (dir / "management.key").string() + "\"\nmanagement_key_algorithm = \"aes128\"\n";
  }
  return config;
}

// pcscd with its own reader and the card in it, dojangd serving it through the PIV driver (its
// overlay in the daemon's state directory), dojang-ca, and renewal.toml pointing at it. With
// `ownManagementKey` the card has a management key of its own, named in [[piv.card]]: the key
// generation of a renewal (a user session, logged in with the PIN) uses it, with no SO login.
struct PivRenewal {
  explicit PivRenewal(bool ownManagementKey = false)
      : pcscd(dir.path(), kReader),
        daemon(softhsm, test::DojangdOptions{"", pivConfig(dir.path(), ownManagementKey), {}}),
        caDir(dir / "ca") {
    if (ownManagementKey) {
      test::writeText(dir / "management.key", std::string(kManagementKey) + "\n");
      std::filesystem::permissions(dir / "management.key", std::filesystem::perms::owner_read);
      cardArguments = {"--management-key-algorithm", "aes128", "--management-key", kManagementKey};
    }
    env = daemon.env();
    env["DOJANG_MODULE"] = test::dojangModulePath();
    env["HOME"] = (dir / "home").string();
    env["XDG_CACHE_HOME"] = (dir / "cache").string();
    env["XDG_STATE_HOME"] = (dir / "cli-state").string();
    env["XDG_CONFIG_HOME"] = (dir / "config").string();
    REQUIRE(catest::run({catest::dojangCa(), "init", "--dir", caDir.string()}).exitCode == 0);
    server = std::make_unique<catest::CaServer>(caDir.string(),
                                                std::vector<std::string>{"--test-validity-days", "20"});
    test::writeText(dir / "renewal.toml", "[renewal]\ndefault_ca = \"test\"\n[ca.test]\nurl = \"" +
                                              server->url("/") + "\"\ntrusted = \"" +
                                              (caDir / "ca.cert.pem").string() +
                                              "\"\ntimeout_seconds = 3\nvalidity_days = 20\n");
    insert();
  }

  void insert() {
    card.start(pcscd.port(), dir / "card.state", cardArguments);
    REQUIRE(card.waitUntilPresent(pcscd.readerName()));
    waitForToken();
  }
  void pull() {
    REQUIRE(card.stop() == 0);
    REQUIRE(card.waitUntilAbsent(pcscd.readerName()));
  }
  // dojangd stopped, the card pulled and put back, dojangd started again: only the overlay
  // remembers what PIV cannot store.
  void restartWithCardPulled() {
    pull();
    const int stopped = daemon.stop();
    INFO(daemon.log());
    REQUIRE(stopped == 0);
    card.start(pcscd.port(), dir / "card.state", cardArguments);
    REQUIRE(card.waitUntilPresent(pcscd.readerName()));
    daemon.restart();
    waitForToken();
  }

  test::CommandResult run(const std::vector<std::string>& argv, const std::string& input = {}) const {
    test::CommandOptions options;
    options.env = env;
    options.input = input;
    auto result = test::runCommand(argv, options);
    UNSCOPED_INFO("$ " << joined(argv) << "\nexit " << result.exitCode << "\n" << result.out << result.err);
    return result;
  }
  // pkcs11-tool on the card's token through dojang, logged in.
  test::CommandResult tool(std::vector<std::string> arguments) const {
    arguments.insert(arguments.begin(), {"pkcs11-tool", "--module", test::dojangModulePath(), "--token-label",
                                         kTokenLabel, "--login", "--pin", kPin});
    return run(arguments);
  }
  void waitForToken() const {
    for (int attempt = 0; attempt < 100; ++attempt) {
      const auto slots = run({"pkcs11-tool", "--module", test::dojangModulePath(), "--list-token-slots"});
      if (slots.exitCode == 0 && contains(slots.out, kTokenLabel)) {
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    FAIL("dojangd never showed the PIV card\n" << daemon.log());
  }
  std::string path(const std::string& name) const { return (dir / name).string(); }
  std::string objects() const { return tool({"--list-objects"}).out; }

  // `dojang enroll` of the first certificate: the key generated on the card by the engine.
  void enroll(const std::string& keyType) const {
    const auto codes = test::enrolmentCodeFor(caDir, kProfile);
    const auto enrolled =
        run({test::dojangCli(), "enroll", "--config", path("renewal.toml"), "--pin-stdin", "--json",
             "--token", kTokenLabel, "--ref", codes["reference"].get<std::string>(), "--code",
             codes["authorization_code"].get<std::string>(), "--label", kLabel, "--key-type", keyType,
             "--accept-fee", "4400"},
            std::string(kPin) + "\n");
    REQUIRE(enrolled.exitCode == 0);
    CHECK(nlohmann::json::parse(enrolled.out)["enrolled"] == kLabel);
  }
  // `dojang renew LABEL EXTRA...`, non-interactively; the new pair's CKA_ID as hex.
  std::string renew(const std::vector<std::string>& extra, const std::string& keyType = {}) const {
    std::vector<std::string> argv = {
        test::dojangCli(), "renew",        kLabel, "--config", path("renewal.toml"),
        "--pin-stdin",     "--accept-fee", "4400", "--json"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    const auto renewed = run(argv, std::string(kPin) + "\n");
    REQUIRE(renewed.exitCode == 0);
    const auto json = nlohmann::json::parse(renewed.out);
    CHECK(json["renewed"] == kLabel);
    if (!keyType.empty()) {
      CHECK(json["key_type"] == keyType);
    }
    const std::string keyId = json["key_id"];
    REQUIRE(keyId.size() == 32);
    return keyId;
  }

  // What must hold after the renewal, and again after the card and dojangd came back.
  void checkRenewed(const std::string& keyId) const {
    const auto listing = objects();
    INFO(listing);
    // The new pair and its certificate carry the application's CKA_ID and the old label; the old
    // pair and certificate are retired.
    CHECK(test::count(listing, "ID:         " + keyId) == 3);
    CHECK(test::count(listing, "label:      signkey\n") == 3);
    CHECK(test::count(listing, "label:      signkey (retired ") == 3);
    // Generated on the card by the renewal, and never out of it.
    const auto keys = objectsWith(listing, "Private Key Object", "ID:         " + keyId + "\n");
    REQUIRE(keys.size() == 1);
    CHECK(contains(keys[0], "label:      signkey\n"));
    CHECK(contains(keys[0], "Access:     sensitive, always sensitive, never extractable, local\n"));
  }
  // The card's objects as OpenSC sees them with dojangd stopped (dojangd is started again after).
  test::CommandResult opensc(const std::vector<std::string>& arguments) {
    REQUIRE(daemon.stop() == 0);
    std::vector<std::string> argv = {"pkcs11-tool", "--module", kOpenscModule};
    argv.insert(argv.end(), arguments.begin(), arguments.end());
    auto result = run(argv);
    daemon.restart();
    waitForToken();
    return result;
  }

  static std::string joined(const std::vector<std::string>& argv) {
    std::string text;
    for (const auto& argument : argv) {
      text += argument + " ";
    }
    return text;
  }

  test::PcscdLock lock;  // first: pcscd is machine-wide
  test::TempDir dir{"dojang-pivrenew-"};
  test::PcscdProcess pcscd;
  test::VirtualPivCard card{dir.path()};
  test::SoftHsmToken softhsm;
  test::DojangdProcess daemon;
  std::filesystem::path caDir;
  std::unique_ptr<catest::CaServer> server;
  std::map<std::string, std::string> env;
  std::vector<std::string> cardArguments;
};

// The renewed key signs through dojang-pkcs11.so; openssl verifies with the new certificate, whose
// public key is the new public key object's.
void checkSigning(const PivRenewal& bench, const std::string& keyId, bool ec) {
  REQUIRE(
      bench.tool({"--read-object", "--type", "cert", "--id", keyId, "-o", bench.path("new.der")}).exitCode ==
      0);
  REQUIRE(bench
              .run({"openssl", "x509", "-inform", "DER", "-in", bench.path("new.der"), "-pubkey", "-noout",
                    "-out", bench.path("new-cert.pub.pem")})
              .exitCode == 0);
  REQUIRE(bench.tool({"--read-object", "--type", "pubkey", "--id", keyId, "-o", bench.path("new.pub.der")})
              .exitCode == 0);
  REQUIRE(bench
              .run({"openssl", "pkey", "-pubin", "-inform", "DER", "-in", bench.path("new.pub.der"), "-out",
                    bench.path("new-key.pub.pem")})
              .exitCode == 0);
  CHECK(readFile(bench.path("new-cert.pub.pem")) == readFile(bench.path("new-key.pub.pem")));

  test::writeText(bench.dir / "document.txt", "renewed on the PIV card");
  const auto sign = bench.tool({"--sign", "--id", keyId, "-m", ec ? "ECDSA-SHA256" : "SHA256-RSA-PKCS",
                                "--signature-format", "openssl", "-i", bench.path("document.txt"), "-o",
                                bench.path("signature")});
  REQUIRE(sign.exitCode == 0);
  const auto verify = bench.run({"openssl", "dgst", "-sha256", "-verify", bench.path("new-cert.pub.pem"),
                                 "-signature", bench.path("signature"), bench.path("document.txt")});
  CHECK(contains(verify.out, "Verified OK"));
}

void renewOnCard(const std::string& keyType, bool ec, bool ownManagementKey) {
  INFO(keyType);
  PivRenewal bench(ownManagementKey);
  bench.enroll(keyType);
  {
    const auto listing = bench.objects();
    INFO(listing);
    CHECK(test::count(listing, "label:      signkey\n") == 3);
  }
  const std::string keyId = bench.renew({}, keyType);
  bench.checkRenewed(keyId);
  checkSigning(bench, keyId, ec);

  // Pulled and put back: the overlay gives the card its labels, CKA_IDs and CKA_LOCAL again.
  bench.pull();
  bench.insert();
  bench.checkRenewed(keyId);
  // And after dojangd itself restarted, with the card pulled meanwhile.
  bench.restartWithCardPulled();
  bench.checkRenewed(keyId);
  checkSigning(bench, keyId, ec);

  // OpenSC, loaded directly with dojangd stopped, finds the new certificate in the PIV slot the
  // driver chose (retired slot 82, OpenSC's CKA_ID 05, listed in the Key History object).
  REQUIRE(bench.opensc({"--read-object", "--type", "cert", "--id", "05", "-o", bench.path("opensc.der")})
              .exitCode == 0);
  CHECK(readFile(bench.path("opensc.der")) == readFile(bench.path("new.der")));
}

}  // namespace

TEST_CASE("dojang enroll and renew on a PIV card: EC P-256, the new key generated on the card",
          "[piv][renew][integration]") {
  renewOnCard("ec-p256", true, false);
}

TEST_CASE(
    "a renewal on a PIV card killed after the CA issued, the card pulled and dojangd restarted, is "
    "finished by --recover; the next renewal with --delete-old frees the old key's slot",
    "[piv][renew][integration]") {
  PivRenewal bench;
  bench.enroll("ec-p256");
  const char* faults = std::getenv("DOJANG_CLI_FAULTS");
  REQUIRE(faults != nullptr);
  auto env = bench.env;
  env["DOJANG_FAULT_AT"] = "issued";
  test::CommandOptions options;
  options.env = env;
  options.input = std::string(kPin) + "\n";
  const auto killed = test::runCommand({faults, "renew", kLabel, "--config", bench.path("renewal.toml"),
                                        "--pin-stdin", "--accept-fee", "4400"},
                                       options);
  INFO(killed.out << killed.err);
  REQUIRE(killed.exitCode == 128 + SIGKILL);

  // The pending key has no certificate on the card; the overlay still knows it by its CKA_ID.
  bench.restartWithCardPulled();
  const auto pending =
      objectsWith(bench.objects(), "Private Key Object", "label:      signkey (renewal pending)\n");
  REQUIRE(pending.size() == 1);
  CHECK(contains(pending[0], "Access:     sensitive, always sensitive, never extractable, local\n"));
  const std::string keyId = idOf(pending[0]);
  REQUIRE(keyId.size() == 32);
  const auto recovered = bench.run(
      {test::dojangCli(), "renew", "--recover", "--config", bench.path("renewal.toml"), "--pin-stdin"},
      std::string(kPin) + "\n");
  REQUIRE(recovered.exitCode == 0);
  bench.checkRenewed(keyId);
  checkSigning(bench, keyId, true);

  // Renewing again with --delete-old: the old pair's slot (82) is freed, its certificate deleted,
  // and the new key goes to the next free slot (83; 9A still holds the first, retired pair).
  const std::string nextId = bench.renew({"--delete-old"});
  const auto check = [&] {
    const auto listing = bench.objects();
    INFO(listing);
    CHECK(test::count(listing, "ID:         " + keyId) == 0);
    CHECK(test::count(listing, "ID:         " + nextId) == 3);
    CHECK(test::count(listing, "label:      signkey\n") == 3);
    CHECK(test::count(listing, "label:      signkey (retired ") == 3);
  };
  check();
  bench.restartWithCardPulled();
  check();
  checkSigning(bench, nextId, true);
  CHECK(bench.opensc({"--read-object", "--type", "cert", "--id", "05", "-o", bench.path("opensc-82.der")})
            .exitCode != 0);
  REQUIRE(bench.opensc({"--read-object", "--type", "cert", "--id", "06", "-o", bench.path("opensc-83.der")})
              .exitCode == 0);
  CHECK(readFile(bench.path("opensc-83.der")) == readFile(bench.path("new.der")));

  // Deleting the first pair's private key by hand frees 9A: its certificate goes with it (for
  // dojang's clients at once, and on the card), and the next renewal's key lands there again.
  const auto retired = objectsWith(bench.objects(), "Private Key Object", "label:      signkey (retired ");
  REQUIRE(retired.size() == 1);
  const std::string firstId = idOf(retired[0]);
  REQUIRE(bench.tool({"--delete-object", "--type", "privkey", "--id", firstId}).exitCode == 0);
  {
    const auto listing = bench.objects();
    CHECK(objectsWith(listing, "Certificate Object", "ID:         " + firstId + "\n").empty());
    CHECK(objectsWith(listing, "Private Key Object", "ID:         " + firstId + "\n").empty());
    CHECK(objectsWith(listing, "Public Key Object", "ID:         " + firstId + "\n").size() == 1);
  }
  const std::string lastId = bench.renew({"--delete-old"});
  checkSigning(bench, lastId, true);
  REQUIRE(bench.opensc({"--read-object", "--type", "cert", "--id", "01", "-o", bench.path("opensc-9a.der")})
              .exitCode == 0);
  CHECK(readFile(bench.path("opensc-9a.der")) == readFile(bench.path("new.der")));
  const auto listing = bench.objects();
  INFO(listing);
  CHECK(test::count(listing, "ID:         " + lastId) == 3);
  CHECK(test::count(listing, "ID:         " + nextId) == 0);
  // The first pair's public key stayed (hidden only when destroyed itself) until the new key
  // overwrote its slot.
  CHECK(test::count(listing, "ID:         " + firstId) == 0);
}

TEST_CASE("dojang enroll and renew on a PIV card: RSA-2048 on a card with its own AES-128 management key",
          "[piv][renew][integration]") {
  renewOnCard("rsa-2048", false, true);
}
