// `dojang renew` end to end with real peers: a fresh SoftHSM token behind a real dojangd, every
// token access through dojang-pkcs11.so, dojang-ca on 127.0.0.1 issuing 20-day certificates (inside
// the 30-day renewal window), pkcs11-tool and `openssl cmp` for the first certificate, and openssl
// to check what the renewed key signs.
#include <catch2/catch.hpp>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>

#include "tests/integration/renewal_fixture.h"
#include "tests/support/background_process.h"
#include "tests/support/test_pinentry.h"

namespace test = dojang::test;
namespace catest = dojang::ca::test;

namespace {

constexpr const char* kLabel = test::kRenewalLabel;
using test::count;
using test::dojangCli;
using test::writeText;
using Fixture = test::RenewalFixture;

void checkRenewed(Fixture& f, const std::string& keyTypeName) {
  const auto result = f.renew({kLabel, "--accept-fee", "4400", "--json"}, f.token.pin());
  INFO(result.out << result.err);
  REQUIRE(result.exitCode == 0);
  const auto renewed = nlohmann::json::parse(result.out);
  CHECK(renewed["renewed"] == kLabel);
  CHECK(renewed["type"] == "SignKorea 범용 개인");
  CHECK(renewed["key_type"] == keyTypeName);
  CHECK(renewed["fee_krw"] == 4400);
  const std::string keyId = renewed["key_id"];
  REQUIRE(keyId.size() == 32);

  // The new private key was made on the token and never left it.
  const auto objects = f.objects();
  INFO(objects);
  const auto newKeyAt = objects.find("ID:         " + keyId);
  REQUIRE(newKeyAt != std::string::npos);
  const auto attributes = f.run({"pkcs11-tool", "--module", test::dojangModulePath(), "--login", "--pin",
                                 f.token.pin(), "--list-objects", "--type", "privkey", "--id", keyId});
  CHECK(attributes.out.find("Access:     sensitive, always sensitive, never extractable, local") !=
        std::string::npos);
  // The old pair is retired, the new one has the old label, the certificate is stored under the new ID.
  CHECK(objects.find("signkey (retired ") != std::string::npos);
  CHECK(count(objects, "label:      signkey\n") >= 3);

  // The new certificate signs through dojang-pkcs11.so, and openssl verifies the signature.
  const auto dir = f.work.path();
  REQUIRE(f.run({"pkcs11-tool", "--module", test::dojangModulePath(), "--read-object", "--type", "cert",
                 "--id", keyId, "-o", (dir / "new.der").string()})
              .exitCode == 0);
  REQUIRE(f.run({"openssl", "x509", "-inform", "DER", "-in", (dir / "new.der").string(), "-pubkey", "-noout",
                 "-out", (dir / "new.pub.pem").string()})
              .exitCode == 0);
  writeText(dir / "document.txt", "renewed on the token");
  REQUIRE(f.run({"openssl", "dgst", "-sha256", "-binary", "-out", (dir / "document.sha256").string(),
                 (dir / "document.txt").string()})
              .exitCode == 0);
  const bool ec = keyTypeName.rfind("ec-", 0) == 0;
  const auto sign =
      f.run({"pkcs11-tool", "--module", test::dojangModulePath(), "--login", "--pin", f.token.pin(), "--sign",
             "--id", keyId, "-m", ec ? "ECDSA" : "SHA256-RSA-PKCS", "--signature-format", "openssl", "-i",
             (dir / (ec ? "document.sha256" : "document.txt")).string(), "-o", (dir / "signature").string()});
  INFO(sign.err);
  REQUIRE(sign.exitCode == 0);
  const auto verify = f.run({"openssl", "dgst", "-sha256", "-verify", (dir / "new.pub.pem").string(),
                             "-signature", (dir / "signature").string(), (dir / "document.txt").string()});
  CHECK(verify.out.find("Verified OK") != std::string::npos);

  // The CA's ledger holds the first issuance and the renewal, 4,400 KRW each.
  const auto ledger = catest::run({catest::dojangCa(), "ledger", "--dir", f.caDir.string(), "--json"});
  INFO(ledger.output);
  CHECK(count(ledger.output, "4400") >= 2);
  CHECK(ledger.output.find("renewal") != std::string::npos);
  // The journal says the renewal went through every step and ended at "retired".
  CHECK(std::filesystem::exists(dir / "state" / "dojang" / "renewal.db"));
  const auto history = f.run({dojangCli(), "renew", "--history", "--json"});
  INFO(history.out << history.err);
  REQUIRE(history.exitCode == 0);
  const auto journal = nlohmann::json::parse(history.out);
  REQUIRE(!journal.empty());
  const auto& latest = journal.front();
  CHECK(latest["kind"] == "renew");
  CHECK(latest["step"] == "retired");
  std::vector<std::string> steps;
  for (const auto& event : latest["events"]) {
    steps.push_back(event["step"]);
  }
  CHECK(steps == std::vector<std::string>{"keygen", "requested", "issued", "stored", "retired"});
}

}  // namespace

TEST_CASE("dojang renew: an EC P-256 certificate on the token", "[renew]") {
  Fixture f("EC:prime256v1");
  checkRenewed(f, "ec-p256");
}

TEST_CASE("dojang renew: an RSA-2048 certificate on the token", "[renew]") {
  Fixture f("rsa:2048");
  checkRenewed(f, "rsa-2048");
}

TEST_CASE("dojang renew refuses before generating anything", "[renew]") {
  Fixture f("EC:prime256v1");
  const auto before = count(f.objects(), "Private Key Object");

  SECTION("a fee that is not the CA's") {
    const auto result = f.renew({kLabel, "--accept-fee", "4000"}, f.token.pin());
    CHECK(result.exitCode == 1);
    CHECK(result.err.find("4,400 KRW") != std::string::npos);
    CHECK(result.err.find("nothing was generated") != std::string::npos);
  }
  SECTION("a paid profile without the fee accepted, off a terminal") {
    const auto result = f.renew({kLabel}, f.token.pin());
    CHECK(result.exitCode == 1);
    CHECK(result.err.find("was not accepted") != std::string::npos);
  }
  SECTION("a wrong PIN, never retried") {
    const auto result = f.renew({kLabel, "--accept-fee", "4400"}, "999999");
    CHECK(result.exitCode == 1);
    CHECK(result.err.find("wrong PIN") != std::string::npos);
    CHECK(result.err.find("not retried") != std::string::npos);
  }
  SECTION("the CA is down: the old pair stays, no key is left behind") {
    CHECK(f.server->stop() == 0);
    const auto result = f.renew({kLabel, "--accept-fee", "4400"}, f.token.pin());
    CHECK(result.exitCode == 1);
    CHECK(result.err.find("the old certificate and key are unchanged") != std::string::npos);
  }
  SECTION("no certificate named, off a terminal: the list, exit 2") {
    const auto result = f.renew({}, f.token.pin());
    CHECK(result.exitCode == 2);
    CHECK(result.err.find(kLabel) != std::string::npos);
    CHECK(result.err.find("SignKorea 범용 개인") != std::string::npos);
  }
  const auto after = f.objects();
  CHECK(count(after, "Private Key Object") == before);
  // Whatever was journalled ended rolled back, never half-done.
  const auto history = f.run({dojangCli(), "renew", "--history", "--json"});
  REQUIRE(history.exitCode == 0);
  for (const auto& record : nlohmann::json::parse(history.out)) {
    CHECK(record["step"] == "rolled-back");
  }
  CHECK(after.find("renewal pending") == std::string::npos);
  CHECK(after.find("retired") == std::string::npos);
}

TEST_CASE("dojang renew outside the window names the date it opens", "[renew]") {
  Fixture f("EC:prime256v1", {});  // a real one-year certificate
  const auto result = f.renew({kLabel, "--accept-fee", "4400"}, f.token.pin());
  CHECK(result.exitCode == 1);
  CHECK(result.err.find("too early to renew") != std::string::npos);
  CHECK(result.err.find("the renewal window opens on ") != std::string::npos);
}

TEST_CASE("dojang enroll: a first certificate for a key generated on the token", "[renew]") {
  Fixture f("", {"--test-validity-days", "20"}, false);
  const auto codes = f.enrolmentCode();
  test::CommandOptions options;
  options.env = f.env;
  options.input = f.token.pin() + "\n";
  const auto enrolled = test::runCommand(
      {dojangCli(), "enroll", "--config", (f.work.path() / "renewal.toml").string(), "--pin-stdin", "--json",
       "--ref", codes["reference"].get<std::string>(), "--code",
       codes["authorization_code"].get<std::string>(), "--label", kLabel, "--accept-fee", "4400"},
      options);
  INFO(enrolled.out << enrolled.err);
  REQUIRE(enrolled.exitCode == 0);
  const auto json = nlohmann::json::parse(enrolled.out);
  CHECK(json["enrolled"] == kLabel);
  CHECK(json["type"] == "SignKorea 범용 개인");
  CHECK(json["key_type"] == "ec-p256");
  // The certificate is on the token beside its key, and is renewable at once (20-day validity).
  checkRenewed(f, "ec-p256");
}

TEST_CASE("dojang reissue: a new key and certificate that keep the old expiry; the old pair retired",
          "[renew]") {
  Fixture f("EC:prime256v1");
  const auto certs = nlohmann::json::parse(f.run({dojangCli(), "certs", "--json"}).out);
  REQUIRE(certs["certificates"].size() == 1);
  const std::string oldNotAfter = certs["certificates"][0]["notAfter"];
  const std::string oldSerial = certs["certificates"][0]["serial"];

  const auto code = catest::run({catest::dojangCa(), "enroll-code", "--dir", f.caDir.string(), "--reissue",
                                 "--profile", "signkorea-general-personal", "--subject",
                                 "cn=홍길동()0001234567890123,ou=개인", "--json"});
  REQUIRE(code.exitCode == 0);
  const auto codes = nlohmann::json::parse(code.output.substr(code.output.find('{')));
  const auto reissued =
      f.run({dojangCli(), "reissue", kLabel, "--config", (f.work.path() / "renewal.toml").string(),
             "--pin-stdin", "--json", "--ref", codes["reference"].get<std::string>(), "--code",
             codes["authorization_code"].get<std::string>()},
            f.token.pin() + "\n");
  INFO(reissued.out << reissued.err);
  REQUIRE(reissued.exitCode == 0);
  const auto json = nlohmann::json::parse(reissued.out);
  CHECK(json["reissued"] == kLabel);
  CHECK(json["not_after"] == oldNotAfter);  // a reissue keeps the original expiry
  CHECK(json["serial"] != oldSerial);
  CHECK(json["fee_krw"] == 0);

  const auto objects = f.objects();
  INFO(objects);
  CHECK(objects.find("signkey (retired ") != std::string::npos);
  const auto attributes =
      f.run({"pkcs11-tool", "--module", test::dojangModulePath(), "--login", "--pin", f.token.pin(),
             "--list-objects", "--type", "privkey", "--id", json["key_id"].get<std::string>()});
  CHECK(attributes.out.find("Access:     sensitive, always sensitive, never extractable, local") !=
        std::string::npos);
  // The CA revoked the old certificate and lists the new one as a reissue.
  const auto list = catest::run({catest::dojangCa(), "list", "--dir", f.caDir.string(), "--json"});
  const auto listed = nlohmann::json::parse(list.output.substr(list.output.find('[')));
  bool oldRevoked = false;
  bool newIsReissue = false;
  for (const auto& entry : listed) {
    const std::string serial = entry["serial"];
    if (serial == oldSerial || serial == "0" + oldSerial) {
      oldRevoked = entry["status"] == "revoked";
    }
    if (entry["origin"] == "reissue") {
      newIsReissue = true;
    }
  }
  CHECK(oldRevoked);
  CHECK(newIsReissue);
  const auto history = nlohmann::json::parse(f.run({dojangCli(), "renew", "--history", "--json"}).out);
  CHECK(history.front()["kind"] == "reissue");
  CHECK(history.front()["step"] == "retired");
}

TEST_CASE("dojang renew speaks Korean with --lang ko or a Korean locale", "[renew]") {
  Fixture f("EC:prime256v1");
  // A refusal the user meets, in Korean, and still nothing generated.
  const auto mismatch = f.renew({kLabel, "--accept-fee", "4000", "--lang", "ko"}, f.token.pin());
  CHECK(mismatch.exitCode == 1);
  CHECK(mismatch.err.find("SignKorea 범용 개인의 수수료는 4,400원입니다") != std::string::npos);
  CHECK(mismatch.err.find("아무것도 만들지 않았습니다") != std::string::npos);
  const auto wrongPin = f.renew({kLabel, "--accept-fee", "4400", "--lang", "ko"}, "999999");
  CHECK(wrongPin.exitCode == 1);
  CHECK(wrongPin.err.find("PIN이 틀렸습니다") != std::string::npos);
  // The locale decides without the flag.
  const auto renewed =
      f.renew({kLabel, "--accept-fee", "4400"}, f.token.pin(), {}, {{"LANG", "ko_KR.UTF-8"}});
  INFO(renewed.out << renewed.err);
  REQUIRE(renewed.exitCode == 0);
  CHECK(renewed.out.find("갱신되었습니다: \"signkey\" (SignKorea 범용 개인)") != std::string::npos);
  CHECK(renewed.out.find("수수료: 4,400원") != std::string::npos);
  const auto english =
      f.renew({kLabel, "--accept-fee", "4000", "--lang", "en"}, f.token.pin(), {}, {{"LANG", "ko_KR.UTF-8"}});
  CHECK(english.err.find("does not match") != std::string::npos);
}

TEST_CASE("a retired pair is deleted by the next renewal once its retire_days are over", "[renew]") {
  Fixture f("EC:prime256v1");
  const auto config = f.work.path() / "renewal.toml";
  std::stringstream text;
  text << std::ifstream(config).rdbuf();
  std::string toml = text.str();
  const auto at = toml.find("[renewal]\n");
  REQUIRE(at != std::string::npos);
  toml.insert(at + 10, "retire_days = 0\n");
  writeText(config, toml);

  REQUIRE(f.renew({kLabel, "--accept-fee", "4400"}, f.token.pin()).exitCode == 0);
  // The first renewal retired the original pair (CKA_ID 01) and keeps it until retire_days pass.
  CHECK(f.objects().find("ID:         01\n") != std::string::npos);
  // The next run (here a second renewal) deletes it: its time is over.
  const auto second = f.renew({kLabel, "--accept-fee", "4400", "--json"}, f.token.pin());
  INFO(second.out << second.err);
  REQUIRE(second.exitCode == 0);
  const auto objects = f.objects();
  INFO(objects);
  CHECK(objects.find("ID:         01\n") == std::string::npos);
  // The first renewal's pair is the retired one now, kept as its own retire_days say.
  CHECK(count(objects, "signkey (retired ") >= 2);
  const auto history = nlohmann::json::parse(f.run({dojangCli(), "renew", "--history", "--json"}).out);
  REQUIRE(history.size() == 2);
}

TEST_CASE("dojang renew after expiry points to dojang reissue", "[renew]") {
  // dojang-ca backdates the first certificate so that it expired five days ago.
  Fixture f("EC:prime256v1", {"--test-validity-days", "20", "--test-not-before-offset-days", "25"});
  const auto result = f.renew({kLabel, "--accept-fee", "4400"}, f.token.pin());
  INFO(result.out << result.err);
  CHECK(result.exitCode == 1);
  CHECK(result.err.find("expired on ") != std::string::npos);
  CHECK(result.err.find("`dojang reissue`") != std::string::npos);
  CHECK(result.err.find("Koscom 고객센터 1577-7337") != std::string::npos);  // the CA's support line
  CHECK(f.objects().find("renewal pending") == std::string::npos);
}

namespace {

// A stand-in for a broken CA on 127.0.0.1: every POST gets `status` and `body` (python3's
// http.server), so the renewal meets an HTTP error or an answer that is not CMP.
std::unique_ptr<test::BackgroundProcess> brokenCa(const std::filesystem::path& dir, int status,
                                                  const std::string& body, int& port) {
  const auto script = dir / "broken_ca.py";
  writeText(script,
            "import http.server, sys\n"
            "class H(http.server.BaseHTTPRequestHandler):\n"
            "    def do_POST(self):\n"
            "        self.rfile.read(int(self.headers.get('Content-Length', 0)))\n"
            "        self.send_response(int(sys.argv[1]))\n"
            "        self.send_header('Content-Type', 'application/pkixcmp')\n"
            "        self.end_headers()\n"
            "        self.wfile.write(sys.argv[2].encode())\n"
            "    def log_message(self, *args):\n"
            "        pass\n"
            "server = http.server.HTTPServer(('127.0.0.1', 0), H)\n"
            "open(sys.argv[3], 'w').write(str(server.server_address[1]))\n"
            "server.serve_forever()\n");
  const auto portFile = dir / "broken_ca.port";
  auto process = std::make_unique<test::BackgroundProcess>(
      std::vector<std::string>{"python3", script.string(), std::to_string(status), body, portFile.string()});
  for (int i = 0; i < 200 && !std::filesystem::exists(portFile); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  std::stringstream text;
  text << std::ifstream(portFile).rdbuf();
  port = std::stoi(text.str());
  return process;
}

}  // namespace

TEST_CASE("a CA answering HTTP 500 or garbage gives a clear error and leaves the old pair and no orphan key",
          "[renew]") {
  Fixture f("EC:prime256v1");
  const auto before = count(f.objects(), "Private Key Object");
  int port = 0;
  std::unique_ptr<test::BackgroundProcess> ca;
  std::string expected;
  SECTION("HTTP 500") {
    ca = brokenCa(f.work.path(), 500, "internal error", port);
    expected = "500";
  }
  SECTION("an answer that is not CMP") {
    ca = brokenCa(f.work.path(), 200, "this is not a CMP message", port);
    expected = "renewal failed";
  }
  const auto result =
      f.renew({kLabel, "--accept-fee", "4400", "--ca-url", "http://127.0.0.1:" + std::to_string(port) + "/"},
              f.token.pin());
  INFO(result.out << result.err);
  CHECK(result.exitCode == 1);
  CHECK(result.err.find("the old certificate and key are unchanged") != std::string::npos);
  CHECK(result.err.find(expected) != std::string::npos);
  const auto objects = f.objects();
  CHECK(count(objects, "Private Key Object") == before);
  CHECK(objects.find("renewal pending") == std::string::npos);
  const auto history = nlohmann::json::parse(f.run({dojangCli(), "renew", "--history", "--json"}).out);
  REQUIRE(history.size() == 1);
  CHECK(history.front()["step"] == "rolled-back");
  // And the real CA still renews it.
  CHECK(f.renew({kLabel, "--accept-fee", "4400"}, f.token.pin()).exitCode == 0);
}

TEST_CASE("dojang renew on a prompt-mode token: no PIN given, dojangd asks once through pinentry", "[renew][prompt]") {
  test::TempDir pinentryDir("dojang-renew-pinentry-");
  const test::TestPinentry pinentry(pinentryDir.path());
  test::DojangdOptions options;
  options.env = pinentry.env();
  // Every client here may be asked (the first certificate's openssl cmp too): a display for all.
  options.pinSettings = test::TestPinentry::pinSettings("mode = \"prompt\"\ndisplay = \":7\"");
  pinentry.answers(std::vector<std::string>(4, "pin:" + test::SoftHsmOptions{}.pin));
  Fixture f("EC:prime256v1", {"--test-validity-days", "20"}, true, options);
  const auto before = pinentry.prompts().size();
  test::CommandOptions run;
  run.env = f.env;
  const auto result = test::runCommand({dojangCli(), "renew", "--config", (f.work.path() / "renewal.toml").string(),
                                        kLabel, "--accept-fee", "4400", "--json"},
                                       run);
  INFO(result.out << result.err << f.daemon.log());
  REQUIRE(result.exitCode == 0);
  CHECK(nlohmann::json::parse(result.out)["renewed"] == kLabel);
  const auto prompts = pinentry.prompts();
  REQUIRE(prompts.size() == before + 1);
  CHECK(prompts.back().find("dojang (pid ") != std::string::npos);
  CHECK(prompts.back().find("wants to log in") != std::string::npos);
}
