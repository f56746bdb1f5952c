// The native PIV driver end to end: the virtual PIV card behind the real pcscd and vpcd, a real
// dojangd with [piv] enabled, and every operation through dojang-pkcs11.so by pkcs11-tool, with
// openssl checking the results: keys generated on the card, certificates written, ECDSA,
// PKCS#1 and PSS signatures, decryption, the APDU budget of a second client, a wrong PIN, a
// blocked one, and the PUK unblocking it.
#include <PCSC/winscard.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/dojangd_process.h"
#include "tests/support/p11_calls.h"
#include "tests/support/pcscd_process.h"
#include "tests/support/run_command.h"
#include "tests/support/softhsm_token.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_pinentry.h"

namespace {

using dojang::test::readFile;
using dojang::test::writeFile;

using dojang::test::CommandResult;

constexpr const char* kTokenLabel = "PIV card";
constexpr const char* kPin = "123456";
constexpr const char* kPuk = "12345678";

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// What gpg does on a shared YubiKey: SELECT its own application (OpenPGP), then leave the card as
// it is.
void selectOpenPgpElsewhere(const std::string& reader) {
  SCARDCONTEXT context = 0;
  REQUIRE(SCardEstablishContext(SCARD_SCOPE_SYSTEM, nullptr, nullptr, &context) == SCARD_S_SUCCESS);
  SCARDHANDLE card = 0;
  DWORD protocol = 0;
  REQUIRE(SCardConnect(context, reader.c_str(), SCARD_SHARE_SHARED, SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1,
                       &card, &protocol) == SCARD_S_SUCCESS);
  const std::uint8_t select[] = {0x00, 0xA4, 0x04, 0x00, 0x06, 0xD2, 0x76, 0x00, 0x01, 0x24, 0x01};
  std::uint8_t answer[258];
  DWORD length = sizeof answer;
  CHECK(SCardTransmit(card, protocol == SCARD_PROTOCOL_T1 ? SCARD_PCI_T1 : SCARD_PCI_T0, select,
                      sizeof select, nullptr, answer, &length) == SCARD_S_SUCCESS);
  CHECK(length == 2);
  CHECK((answer[0] == 0x90 && answer[1] == 0x00));
  SCardDisconnect(card, SCARD_LEAVE_CARD);
  SCardReleaseContext(context);
}

// pcscd with its own reader, the card in it, and dojangd serving the reader through the PIV
// driver (SoftHSM beside it, as the test daemon always has one).
// `pinSettings`: dojangd's [pin] table, with the test pinentry as its program.
struct PivBench {
  explicit PivBench(const std::string& pinSettings = dojang::test::kApplicationPinMode)
      : pcscd(dir.path(), "dojang PIV driver test"),
        daemon(softhsm, dojang::test::DojangdOptions{
                            "", "[piv]\nenabled = true\nreaders = [\"dojang PIV driver test*\"]\n",
                            pinentry.env(), dojang::test::TestPinentry::pinSettings(pinSettings)}) {}

  void insert(const std::vector<std::string>& cardOptions = {}) {
    card.start(pcscd.port(), dir / "card.state", cardOptions);
    REQUIRE(card.waitUntilPresent(pcscd.readerName()));
  }

  CommandResult run(const std::vector<std::string>& argv) const {
    auto env = daemon.env();
    env["HOME"] = (dir / "home").string();
    env["DISPLAY"] = ":7";  // somewhere for dojangd's prompts (the test pinentry shows nothing)
    auto result = dojang::test::runCommand(argv, env);
    UNSCOPED_INFO("$ " << joined(argv) << "\nexit " << result.exitCode << "\n" << result.out << result.err);
    return result;
  }
  // pkcs11-tool on the card's token through dojang.
  CommandResult tool(std::vector<std::string> arguments) const {
    arguments.insert(arguments.begin(), {"pkcs11-tool", "--module", dojang::test::dojangModulePath(),
                                         "--token-label", kTokenLabel});
    return run(arguments);
  }
  CommandResult userTool(std::vector<std::string> arguments) const {
    arguments.insert(arguments.begin(), {"--login", "--pin", kPin});
    return tool(std::move(arguments));
  }
  std::string path(const std::string& name) const { return (dir / name).string(); }

  // Waits until dojangd shows the card's token (its monitor saw the insertion).
  void waitForToken() const {
    for (int attempt = 0; attempt < 100; ++attempt) {
      const auto slots = tool({"--list-token-slots"});
      if (slots.exitCode == 0 && contains(slots.out, kTokenLabel)) {
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    FAIL("dojangd never showed the PIV card\n" << daemon.log());
  }

  // The public key of the key with `id`, as PEM.
  std::string publicKeyPem(const std::string& id) const {
    const std::string der = path("pub-" + id + ".der");
    const std::string pem = path("pub-" + id + ".pem");
    REQUIRE(tool({"--read-object", "--type", "pubkey", "--id", id, "-o", der}).exitCode == 0);
    REQUIRE(run({"openssl", "pkey", "-pubin", "-inform", "DER", "-in", der, "-out", pem}).exitCode == 0);
    return pem;
  }

  // A CA-signed certificate for the card key `id`, written to the card through dojang.
  void certify(const std::string& id, const std::string& publicKey) const {
    if (!std::filesystem::exists(path("ca.key"))) {
      REQUIRE(run({"openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out",
                   path("ca.key")})
                  .exitCode == 0);
      REQUIRE(run({"openssl", "req", "-new", "-x509", "-key", path("ca.key"), "-subj",
                   "/CN=piv driver test CA", "-days", "30", "-out", path("ca.pem")})
                  .exitCode == 0);
    }
    const std::string request = path("req-" + id + ".csr");
    const std::string certificate = path("cert-" + id + ".der");
    REQUIRE(run({"openssl", "req", "-new", "-key", path("ca.key"), "-subj", "/CN=card key " + id, "-out",
                 request})
                .exitCode == 0);
    REQUIRE(run({"openssl", "x509", "-req", "-in", request, "-CA", path("ca.pem"), "-CAkey", path("ca.key"),
                 "-CAcreateserial", "-force_pubkey", publicKey, "-days", "30", "-outform", "DER", "-out",
                 certificate})
                .exitCode == 0);
    REQUIRE(
        userTool({"--write-object", certificate, "--type", "cert", "--id", id, "--label", "card cert " + id})
            .exitCode == 0);
  }

  static std::string joined(const std::vector<std::string>& argv) {
    std::string text;
    for (const auto& argument : argv) {
      text += argument + " ";
    }
    return text;
  }

  dojang::test::PcscdLock lock;
  dojang::test::TempDir dir{"dojang-pivdrv-"};
  dojang::test::TestPinentry pinentry{dir / "pinentry"};  // before the daemon, whose options name it
  dojang::test::PcscdProcess pcscd;
  dojang::test::VirtualPivCard card{dir.path()};
  dojang::test::SoftHsmToken softhsm;
  dojang::test::DojangdProcess daemon;
};

}  // namespace

TEST_CASE(
    "PIV through dojang: on-card keys, certificates, ECDSA, PKCS#1, PSS, decryption, no APDUs for a second "
    "client",
    "[piv][integration]") {
  PivBench bench;
  bench.insert();
  bench.waitForToken();
  writeFile(bench.path("data"), "the data to sign, PIV through dojang\n");

  // EC P-256 in 9A (CKA_ID 01), generated on the card.
  REQUIRE(bench.userTool({"--keypairgen", "--key-type", "EC:prime256v1", "--id", "01", "--label", "ec"})
              .exitCode == 0);
  const std::string ecPublic = bench.publicKeyPem("01");
  bench.certify("01", ecPublic);
  REQUIRE(bench
              .userTool({"--sign", "--mechanism", "ECDSA-SHA256", "--id", "01", "-i", bench.path("data"),
                         "-o", bench.path("sig-ec"), "--signature-format", "openssl"})
              .exitCode == 0);
  CHECK(bench
            .run({"openssl", "dgst", "-sha256", "-verify", ecPublic, "-signature", bench.path("sig-ec"),
                  bench.path("data")})
            .exitCode == 0);

  // RSA-2048 in 9D (CKA_ID 03): PKCS#1 v1.5 and PSS signatures, decryption.
  REQUIRE(
      bench.userTool({"--keypairgen", "--key-type", "rsa:2048", "--id", "03", "--label", "rsa"}).exitCode ==
      0);
  const std::string rsaPublic = bench.publicKeyPem("03");
  bench.certify("03", rsaPublic);
  REQUIRE(bench
              .userTool({"--sign", "--mechanism", "SHA256-RSA-PKCS", "--id", "03", "-i", bench.path("data"),
                         "-o", bench.path("sig-pkcs1")})
              .exitCode == 0);
  CHECK(bench
            .run({"openssl", "dgst", "-sha256", "-verify", rsaPublic, "-signature", bench.path("sig-pkcs1"),
                  bench.path("data")})
            .exitCode == 0);
  REQUIRE(bench
              .userTool({"--sign", "--mechanism", "SHA256-RSA-PKCS-PSS", "--id", "03", "-i",
                         bench.path("data"), "-o", bench.path("sig-pss")})
              .exitCode == 0);
  CHECK(bench
            .run({"openssl", "dgst", "-sha256", "-sigopt", "rsa_padding_mode:pss", "-sigopt",
                  "rsa_pss_saltlen:-2", "-verify", rsaPublic, "-signature", bench.path("sig-pss"),
                  bench.path("data")})
            .exitCode == 0);

  writeFile(bench.path("secret"), "a session key");
  REQUIRE(bench
              .run({"openssl", "pkeyutl", "-encrypt", "-pubin", "-inkey", rsaPublic, "-in",
                    bench.path("secret"), "-out", bench.path("secret.enc")})
              .exitCode == 0);
  REQUIRE(bench
              .userTool({"--decrypt", "--mechanism", "RSA-PKCS", "--id", "03", "-i", bench.path("secret.enc"),
                         "-o", bench.path("secret.dec")})
              .exitCode == 0);
  CHECK(readFile(bench.path("secret.dec")) == "a session key");
  REQUIRE(bench
              .run({"openssl", "pkeyutl", "-encrypt", "-pubin", "-inkey", rsaPublic, "-pkeyopt",
                    "rsa_padding_mode:oaep", "-in", bench.path("secret"), "-out", bench.path("secret.oaep")})
              .exitCode == 0);
  REQUIRE(bench
              .userTool({"--decrypt", "--mechanism", "RSA-PKCS-OAEP", "--hash-algorithm", "SHA-1", "--mgf",
                         "MGF1-SHA1", "--id", "03", "-i", bench.path("secret.oaep"), "-o",
                         bench.path("secret.dec2")})
              .exitCode == 0);
  CHECK(readFile(bench.path("secret.dec2")) == "a session key");

  // The objects are the card's, ykcs11-style, with the labels the templates gave (kept in the
  // driver's slot overlay); a later client reads them from dojangd's cache. The last client's
  // logout reaches the card after that client has exited: wait for the card to go quiet first.
  for (auto seen = bench.card.apduCount();; seen = bench.card.apduCount()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    if (bench.card.apduCount() == seen) {
      break;
    }
  }
  bench.card.clearApduLog();
  const auto listing = bench.tool({"--list-objects"});
  REQUIRE(listing.exitCode == 0);
  CHECK(contains(listing.out, "label:      card cert 01\n"));
  CHECK(contains(listing.out, "label:      card cert 03\n"));
  CHECK(contains(listing.out, "label:      rsa\n"));
  CHECK(contains(listing.out, "CN=card key 03"));
  INFO(PivBench::joined(bench.card.apduLines()));
  CHECK(bench.card.apduCount() == 0);
}

TEST_CASE("PIV through dojang: a wrong PIN shows in the token flags, three block it, the PUK unblocks it",
          "[piv][integration][pin]") {
  PivBench bench;
  bench.insert();
  bench.waitForToken();

  const auto wrong = bench.tool({"--login", "--pin", "000000", "--list-objects"});
  CHECK(wrong.exitCode != 0);
  CHECK(contains(wrong.out + wrong.err, "CKR_PIN_INCORRECT"));
  const auto afterOne = bench.tool({"--list-token-slots"});
  CHECK(contains(afterOne.out, "PIN count low"));
  if (const char* cli = std::getenv("DOJANG_CLI")) {
    const auto tokens = bench.run({cli, "tokens", "--module", dojang::test::dojangModulePath()});
    CHECK(contains(tokens.out, "PIN count low"));
    CHECK(contains(tokens.out, "default PIV management key"));
  }

  CHECK(bench.tool({"--login", "--pin", "000000", "--list-objects"}).exitCode != 0);
  CHECK(contains(bench.tool({"--list-token-slots"}).out, "final user PIN try"));
  CHECK(bench.tool({"--login", "--pin", "000000", "--list-objects"}).exitCode != 0);
  CHECK(contains(bench.tool({"--list-token-slots"}).out, "user PIN locked"));
  const auto blocked = bench.tool({"--login", "--pin", kPin, "--list-objects"});
  CHECK(blocked.exitCode != 0);
  CHECK(contains(blocked.out + blocked.err, "CKR_PIN_LOCKED"));

  // The SO of a PIV card holds the PUK: C_Login(CKU_SO) then C_InitPIN is RESET RETRY COUNTER.
  REQUIRE(bench.tool({"--login", "--login-type", "so", "--so-pin", kPuk, "--init-pin", "--new-pin", "654321"})
              .exitCode == 0);
  CHECK_FALSE(contains(bench.tool({"--list-token-slots"}).out, "user PIN locked"));
  CHECK(bench.tool({"--login", "--pin", "654321", "--list-objects"}).exitCode == 0);
}

TEST_CASE("PIV through dojang: ECDSA P-384 on the card, and the PIN changed with C_SetPIN",
          "[piv][integration]") {
  PivBench bench;
  bench.insert();
  bench.waitForToken();
  writeFile(bench.path("data"), "P-384 through dojang\n");

  // EC P-384 in 9E (CKA_ID 04): the card signs a SHA-384 hash, openssl verifies.
  REQUIRE(bench.userTool({"--keypairgen", "--key-type", "EC:secp384r1", "--id", "04", "--label", "p384"})
              .exitCode == 0);
  // pkcs11-tool 0.23 cannot export a P-384 public key ("cannot create EVP_PKEY", SoftHSM too), so
  // the SubjectPublicKeyInfo is made from the EC_POINT it lists: the fixed P-384 prefix, then the
  // point inside CKA_EC_POINT's OCTET STRING (04 61).
  const auto listed = bench.tool({"--list-objects", "--type", "pubkey", "--id", "04"}).out;
  const auto at = listed.find("EC_POINT:   0461");
  REQUIRE(at != std::string::npos);
  const std::string pointHex = listed.substr(at + std::string("EC_POINT:   0461").size(), 194);
  std::string spki = "3076301006072a8648ce3d020106052b81040022036200";
  spki += pointHex;
  std::string der;
  for (std::size_t i = 0; i + 1 < spki.size(); i += 2) {
    der += static_cast<char>(std::stoi(spki.substr(i, 2), nullptr, 16));
  }
  writeFile(bench.path("pub-04.der"), der);
  const std::string publicKey = bench.path("pub-04.pem");
  REQUIRE(bench
              .run({"openssl", "pkey", "-pubin", "-inform", "DER", "-in", bench.path("pub-04.der"), "-out",
                    publicKey})
              .exitCode == 0);
  bench.certify("04", publicKey);
  REQUIRE(bench
              .userTool({"--sign", "--mechanism", "ECDSA-SHA384", "--id", "04", "-i", bench.path("data"),
                         "-o", bench.path("sig-384"), "--signature-format", "openssl"})
              .exitCode == 0);
  CHECK(bench
            .run({"openssl", "dgst", "-sha384", "-verify", publicKey, "-signature", bench.path("sig-384"),
                  bench.path("data")})
            .exitCode == 0);

  // C_SetPIN is CHANGE REFERENCE DATA: the new PIN logs in, the old one is refused, and the card
  // keeps it after being pulled and put back.
  REQUIRE(bench.userTool({"--change-pin", "--new-pin", "24681357"}).exitCode == 0);
  CHECK(bench.tool({"--login", "--pin", "24681357", "--list-objects", "--type", "privkey"}).exitCode == 0);
  const auto refused = bench.tool({"--login", "--pin", kPin, "--list-objects", "--type", "privkey"});
  CHECK(refused.exitCode != 0);
  CHECK(contains(refused.out + refused.err, "CKR_PIN_INCORRECT"));
  REQUIRE(bench.card.stop() == 0);
  // Seen out first: vpcd's reader is looked at every 400 ms, and a card back sooner was never out
  // as far as pcscd can tell.
  REQUIRE(bench.card.waitUntilAbsent(bench.pcscd.readerName()));
  bench.insert();
  bench.waitForToken();
  const auto signedAfter =
      bench.tool({"--login", "--pin", "24681357", "--sign", "--mechanism", "ECDSA-SHA384", "--id", "04", "-i",
                  bench.path("data"), "-o", bench.path("sig-384b")});
  INFO(bench.daemon.log());
  CHECK(signedAfter.exitCode == 0);
}

TEST_CASE("PIV through dojang: another program selecting its own application on the card does not break it",
          "[piv][integration]") {
  PivBench bench;
  bench.insert({"--openpgp-applet"});
  bench.waitForToken();
  writeFile(bench.path("data"), "PIV after gpg\n");
  REQUIRE(bench.userTool({"--keypairgen", "--key-type", "EC:prime256v1", "--id", "01", "--label", "ec"})
              .exitCode == 0);
  const std::string publicKey = bench.publicKeyPem("01");
  bench.certify("01", publicKey);

  // gpg (here: a bare SELECT) takes the card's current application away from PIV between two of
  // dojang's transactions; dojang selects PIV again and the signature goes through.
  selectOpenPgpElsewhere(bench.pcscd.readerName());
  const auto signature =
      bench.userTool({"--sign", "--mechanism", "ECDSA-SHA256", "--id", "01", "-i", bench.path("data"), "-o",
                      bench.path("sig"), "--signature-format", "openssl"});
  INFO(bench.daemon.log());
  REQUIRE(signature.exitCode == 0);
  CHECK(bench
            .run({"openssl", "dgst", "-sha256", "-verify", publicKey, "-signature", bench.path("sig"),
                  bench.path("data")})
            .exitCode == 0);
}

TEST_CASE(
    "PIV through dojang: a management key neither configured nor the default is asked for once, and "
    "kept while the card stays in",
    "[piv][integration][management-key]") {
  constexpr const char* kOwnKey = "00112233445566778899aabbccddeeff0011223344556677";
  PivBench bench;
  bench.insert({"--management-key", kOwnKey});
  bench.waitForToken();

  // A wrong key first: that key generation fails, and the prompt is not repeated by itself.
  bench.pinentry.answers(
      {"pin:0102030405060708010203040506070801020304050607ff", std::string("pin:") + kOwnKey});
  const auto refused = bench.userTool({"--keypairgen", "--key-type", "EC:prime256v1", "--id", "01"});
  CHECK(refused.exitCode != 0);
  CHECK(bench.pinentry.prompts().size() == 1);
  CHECK(contains(bench.daemon.log(), "wrong management key"));

  REQUIRE(bench.userTool({"--keypairgen", "--key-type", "EC:prime256v1", "--id", "01", "--label", "ec"})
              .exitCode == 0);
  const auto prompts = bench.pinentry.prompts();
  REQUIRE(prompts.size() == 2);
  CHECK(contains(prompts[1], "pkcs11-tool (pid "));
  CHECK(contains(prompts[1], "wants to generate a key pair on token PIV card"));
  CHECK(contains(prompts[1], "management key"));
  // The certificate write needs the key too: the one typed is kept, no new prompt.
  bench.certify("01", bench.publicKeyPem("01"));
  CHECK(bench.pinentry.prompts().size() == 2);
}

TEST_CASE(
    "PIV through dojang, prompt mode: the prompt shows the retries left, and says plainly when one is "
    "left",
    "[piv][integration][pin][prompt]") {
  PivBench bench("mode = \"prompt\"");
  bench.insert();
  bench.waitForToken();
  REQUIRE(bench.userTool({"--keypairgen", "--key-type", "EC:prime256v1", "--id", "01", "--label", "ec"})
              .exitCode == 0);
  // This process signs, once per use (pkcs11-tool would try C_Sign, then C_SignUpdate and
  // C_SignFinal, and so meet two prompts for one signature).
  bench.pinentry.answers({"pin:111111", "pin:222222", std::string("pin:") + kPin});
  bench.daemon.exportEnv();
  dojang::test::DojangModule module;
  REQUIRE(module.initialize() == CKR_OK);
  auto& p11 = module.functions();
  CK_SESSION_HANDLE session = 0;
  REQUIRE(p11.C_OpenSession(dojang::test::slotWithLabel(p11, kTokenLabel), CKF_SERIAL_SESSION, nullptr,
                            nullptr, &session) == CKR_OK);
  const auto keys = dojang::test::findWithId(p11, session, CKO_PRIVATE_KEY, 0x01);
  REQUIRE(keys.size() == 1);
  CHECK(dojang::test::signP256Once(p11, session, keys[0]) == CKR_PIN_INCORRECT);
  CHECK(dojang::test::signP256Once(p11, session, keys[0]) == CKR_PIN_INCORRECT);
  CHECK(dojang::test::signP256Once(p11, session, keys[0]) == CKR_OK);
  const auto prompts = bench.pinentry.prompts();
  REQUIRE(prompts.size() == 3);
  CHECK(contains(prompts[0], "3 tries left"));
  CHECK(contains(prompts[1], "2 tries left"));
  CHECK(contains(prompts[1], "A wrong PIN was entered before"));
  CHECK(contains(prompts[2], "LAST TRY: one more wrong PIN locks the token"));
}
