// dojang-ca against OpenSSL's own CMP client: issuance with reference codes, renewal in the
// window, revocation, reissue, p10cr, fees and malformed transport. `openssl cmp` is the judge;
// the CA runs as a real process on 127.0.0.1.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cctype>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tests/ca/ca_test_support.h"

namespace {

namespace t = dojang::ca::test;

constexpr const char* kFeeOid = "2.25.291284094336645414261949578006134921605.1";
constexpr int64_t kDay = 86400;
const std::string kHong = "cn=홍길동()0001234567890123,ou=개인";

std::string feeAck(long long krw) { return std::string(kFeeOid) + ":int:" + std::to_string(krw); }

struct Code final {
  std::string reference;
  std::string secret;
  nlohmann::json raw;
};

// One CA directory per test: keys, certificates, SQLite state.
class CaFixture final {
 public:
  CaFixture() {
    t::CommandResult init = t::run({t::dojangCa(), "init", "--dir", caDir(), "--key-type", "ec"});
    REQUIRE(init.exitCode == 0);
  }

  [[nodiscard]] std::string caDir() const { return m_dir.file("ca"); }
  [[nodiscard]] std::string file(const std::string& name) const { return m_dir.file(name); }
  [[nodiscard]] std::string caCert() const { return caDir() + "/ca.cert.pem"; }

  Code enrollCode(const std::string& profile, const std::string& subject, const std::vector<std::string>& extra = {}) {
    std::vector<std::string> argv = {t::dojangCa(), "enroll-code", "--dir", caDir(), "--profile", profile,
                                     "--subject", subject, "--json"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    t::CommandResult result = t::run(argv);
    INFO(result.output);
    REQUIRE(result.exitCode == 0);
    nlohmann::json json = nlohmann::json::parse(result.output);
    return {json.at("reference").get<std::string>(), json.at("authorization_code").get<std::string>(), json};
  }

  // `openssl cmp` against the server, trusting only this CA.
  t::CommandResult cmp(const t::CaServer& server, const std::vector<std::string>& args) {
    std::vector<std::string> argv = {"openssl", "cmp", "-server", server.hostPort(), "-path", "/",
                                     "-trusted", caCert()};
    argv.insert(argv.end(), args.begin(), args.end());
    return t::run(argv);
  }

  t::CommandResult enrol(const t::CaServer& server, const Code& code, const std::string& key, const std::string& out,
                         const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {"-cmd", "ir", "-ref", code.reference, "-secret", "pass:" + code.secret,
                                     "-newkey", key, "-subject", "/CN=ignored", "-certout", out};
    args.insert(args.end(), extra.begin(), extra.end());
    return cmp(server, args);
  }

  t::CommandResult renew(const t::CaServer& server, const std::string& cert, const std::string& key,
                         const std::string& newKey, const std::string& out, const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {"-cmd", "kur", "-cert", cert, "-key", key, "-newkey", newKey, "-certout", out};
    args.insert(args.end(), extra.begin(), extra.end());
    return cmp(server, args);
  }

  nlohmann::json listJson() { return jsonOf({t::dojangCa(), "list", "--dir", caDir(), "--json"}); }
  nlohmann::json ledgerJson() { return jsonOf({t::dojangCa(), "ledger", "--dir", caDir(), "--json"}); }

  std::string key(const std::string& name) {
    const std::string path = file(name);
    t::generateEcKey(path);
    return path;
  }

 private:
  static nlohmann::json jsonOf(const std::vector<std::string>& argv) {
    t::CommandResult result = t::run(argv);
    INFO(result.output);
    REQUIRE(result.exitCode == 0);
    return nlohmann::json::parse(result.output);
  }

  t::TempDir m_dir;
};

// A CMP rejection: openssl cmp fails and shows our statusString.
void requireRejected(const t::CommandResult& result, const std::string& statusText) {
  INFO(result.output);
  CHECK(result.exitCode != 0);
  CHECK(result.output.find("rejection") != std::string::npos);
  CHECK(result.output.find(statusText) != std::string::npos);
}

void requireAccepted(const t::CommandResult& result) {
  INFO(result.output);
  REQUIRE(result.exitCode == 0);
}

// Runs the jobs at once, one thread each. Catch2 assertions are not thread-safe: the threads only
// collect results, the caller checks them.
std::vector<t::CommandResult> runConcurrently(const std::vector<std::function<t::CommandResult()>>& jobs) {
  std::vector<t::CommandResult> results(jobs.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < jobs.size(); ++i) {
    threads.emplace_back([&, i]() { results[i] = jobs[i](); });
  }
  for (std::thread& thread : threads) {
    thread.join();
  }
  return results;
}

std::string httpStatus(const std::vector<std::string>& curlArgs) {
  std::vector<std::string> argv = {"curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10"};
  argv.insert(argv.end(), curlArgs.begin(), curlArgs.end());
  return t::run(argv).output;
}

}  // namespace

TEST_CASE("ir, kur and rr with openssl cmp; fees are charged; state survives a restart", "[ca][ca-enrol-renew-revoke]") {
  CaFixture ca;
  const std::string key1 = ca.key("k1.pem");
  const std::string cert1 = ca.file("c1.pem");
  Code code = ca.enrollCode("signkorea-general-personal", kHong);
  CHECK(code.raw.at("fee_krw") == 4400);
  CHECK(code.reference.size() == 10);

  nlohmann::json listBefore;
  {
    // Issued certificates expire in 20 days, inside the 30-day renewal window.
    t::CaServer server(ca.caDir(), {"--test-validity-days", "20"});

    requireRejected(ca.enrol(server, code, key1, cert1), "fee of 4,400 KRW must be acknowledged");
    requireRejected(ca.enrol(server, code, key1, cert1, {"-geninfo", feeAck(2200)}),
                    "fee of 4,400 KRW must be acknowledged; the request acknowledged 2,200 KRW");
    requireRejected(ca.enrol(server, Code{code.reference, "WRONGCODE1234567", {}}, key1, cert1, {"-geninfo", feeAck(4400)}),
                    "authorization code is wrong");
    CHECK(ca.ledgerJson().empty());
    CHECK(ca.listJson().empty());

    // The rejections did not use up the code.
    requireAccepted(ca.enrol(server, code, key1, cert1, {"-geninfo", feeAck(4400)}));
    const t::CertificateFacts facts = t::inspectCertificate(cert1);
    CHECK(facts.firstPolicyOid == "1.2.410.200004.5.1.1.5");
    CHECK(facts.subjectUtf8 == "CN=홍길동()0001234567890123,OU=개인,O=SignKorea,C=KR");
    CHECK(facts.cnIsUtf8String);
    CHECK(facts.keyUsageDigitalSignature);
    CHECK(facts.keyUsageNonRepudiation);
    CHECK(facts.hasSubjectKeyId);
    CHECK(facts.hasAuthorityKeyId);
    CHECK(facts.crlUrl == server.url("/crl"));
    CHECK(facts.notAfter - facts.notBefore == 20 * kDay);
    CHECK(t::certificateMatchesKey(cert1, key1));

    // A code works once.
    requireRejected(ca.enrol(server, code, ca.key("k1b.pem"), ca.file("x.pem"), {"-geninfo", feeAck(4400)}),
                    "was already used");
    CHECK(server.running());
    listBefore = ca.listJson();
    REQUIRE(listBefore.size() == 1);
    CHECK(server.stop() == 0);
  }

  // Restart without test knobs: state is intact, renewals get the profile's full year.
  t::CaServer server(ca.caDir());
  CHECK(ca.listJson() == listBefore);
  nlohmann::json ledger = ca.ledgerJson();
  REQUIRE(ledger.size() == 1);
  CHECK(ledger[0].at("amount_krw") == 4400);
  CHECK(ledger[0].at("kind") == "issue");
  CHECK(ledger[0].at("serial") == t::inspectCertificate(cert1).serialHex);

  const std::string key2 = ca.key("k2.pem");
  const std::string cert2 = ca.file("c2.pem");
  requireRejected(ca.renew(server, cert1, key1, key2, cert2), "fee of 4,400 KRW must be acknowledged");
  requireRejected(ca.renew(server, cert1, key1, key1, cert2, {"-geninfo", feeAck(4400)}), "must certify a new key");
  CHECK(ca.ledgerJson().size() == 1);

  requireAccepted(ca.renew(server, cert1, key1, key2, cert2, {"-geninfo", feeAck(4400)}));
  const t::CertificateFacts renewed = t::inspectCertificate(cert2);
  CHECK(t::certificateMatchesKey(cert2, key2));
  CHECK(renewed.firstPolicyOid == "1.2.410.200004.5.1.1.5");
  CHECK(renewed.subjectUtf8 == t::inspectCertificate(cert1).subjectUtf8);
  CHECK(renewed.notAfter - renewed.notBefore == 365 * kDay);
  CHECK(renewed.serialHex != t::inspectCertificate(cert1).serialHex);
  ledger = ca.ledgerJson();
  REQUIRE(ledger.size() == 2);
  CHECK(ledger[1].at("amount_krw") == 4400);
  CHECK(ledger[1].at("kind") == "renewal");
  CHECK(ledger[1].at("serial") == renewed.serialHex);
  CHECK(ledger[1].at("profile") == "signkorea-general-personal");

  // The old certificate was renewed once; the new one is a year away from its window.
  requireRejected(ca.renew(server, cert1, key1, ca.key("k3.pem"), ca.file("x.pem"), {"-geninfo", feeAck(4400)}),
                  "was already renewed");
  requireRejected(ca.renew(server, cert2, key2, ca.key("k4.pem"), ca.file("x.pem"), {"-geninfo", feeAck(4400)}),
                  "the renewal window opens on");
  CHECK(ca.ledgerJson().size() == 2);
  CHECK(ca.listJson().size() == 2);

  // Revocation by the holder (rr signed with the certificate itself), then renewal is refused.
  t::CommandResult revoke = ca.cmp(server, {"-cmd", "rr", "-oldcert", cert2, "-cert", cert2, "-key", key2});
  INFO(revoke.output);
  REQUIRE(revoke.exitCode == 0);
  requireRejected(ca.cmp(server, {"-cmd", "rr", "-oldcert", cert2, "-cert", cert2, "-key", key2}), "already revoked");
  requireRejected(ca.renew(server, cert2, key2, ca.key("k5.pem"), ca.file("x.pem"), {"-geninfo", feeAck(4400)}),
                  "a reissue (new issuance with a reference code) is needed");
  bool sawRevoked = false;
  for (const auto& entry : ca.listJson()) {
    if (entry.at("serial") == renewed.serialHex) {
      sawRevoked = entry.at("status") == "revoked";
    }
  }
  CHECK(sawRevoked);

  // The CRL: served at the distribution point, and written by `dojang-ca crl`.
  const std::string servedCrl = ca.file("served.crl");
  REQUIRE(t::run({"curl", "-s", "-o", servedCrl, "--max-time", "10", renewed.crlUrl}).exitCode == 0);
  CHECK(t::crlSerials(servedCrl) == std::vector<std::string>{renewed.serialHex});
  const std::string writtenCrl = ca.file("written.pem");
  REQUIRE(t::run({t::dojangCa(), "crl", "--dir", ca.caDir(), "--out", writtenCrl, "--pem"}).exitCode == 0);
  CHECK(t::crlSerials(writtenCrl) == std::vector<std::string>{renewed.serialHex});
  t::CommandResult verify = t::run({"openssl", "crl", "-in", writtenCrl, "-CAfile", ca.caCert(), "-noout"});
  INFO(verify.output);
  CHECK(verify.exitCode == 0);
  CHECK(server.running());
}

TEST_CASE("an expired certificate cannot be renewed or reissued", "[ca][ca-expired]") {
  CaFixture ca;
  // Backdated by 30 days and valid for 10: expired 20 days ago.
  t::CaServer server(ca.caDir(), {"--test-validity-days", "10", "--test-not-before-offset-days", "30"});
  const std::string key1 = ca.key("k1.pem");
  const std::string cert1 = ca.file("c1.pem");
  Code code = ca.enrollCode("signkorea-securities", kHong);  // 증권: free
  CHECK(code.raw.at("fee_krw") == 0);
  requireAccepted(ca.enrol(server, code, key1, cert1));
  CHECK(t::inspectCertificate(cert1).firstPolicyOid == "1.2.410.200004.5.1.1.9");
  CHECK(ca.ledgerJson().empty());  // free profiles are not charged

  requireRejected(ca.renew(server, cert1, key1, ca.key("k2.pem"), ca.file("c2.pem")),
                  "renewal is only possible until expiry: a reissue (new issuance with a reference code) is needed");
  CHECK(ca.listJson().size() == 1);

  t::CommandResult reissue = t::run({t::dojangCa(), "enroll-code", "--dir", ca.caDir(), "--profile",
                                     "signkorea-securities", "--subject", kHong, "--reissue"});
  CHECK(reissue.exitCode != 0);
  CHECK(reissue.output.find("issue a new certificate instead") != std::string::npos);
  CHECK(server.running());
}

TEST_CASE("p10cr issues with a reference code and renews with the current certificate", "[ca][ca-p10cr]") {
  CaFixture ca;
  t::CaServer server(ca.caDir(), {"--test-validity-days", "20"});
  const std::string key1 = ca.key("k1.pem");
  const std::string csr1 = ca.file("r1.csr");
  REQUIRE(t::run({"openssl", "req", "-new", "-key", key1, "-subj", "/CN=csr", "-out", csr1}).exitCode == 0);
  Code code = ca.enrollCode("signkorea-tax", kHong);  // 국세청용: 2,200 KRW
  const std::string cert1 = ca.file("c1.pem");
  std::vector<std::string> issue = {"-cmd", "p10cr", "-csr", csr1, "-ref", code.reference, "-secret",
                                    "pass:" + code.secret, "-certout", cert1};
  requireRejected(ca.cmp(server, issue), "fee of 2,200 KRW must be acknowledged");
  issue.insert(issue.end(), {"-geninfo", feeAck(2200)});
  requireAccepted(ca.cmp(server, issue));
  CHECK(t::certificateMatchesKey(cert1, key1));
  CHECK(t::inspectCertificate(cert1).firstPolicyOid == "1.2.410.200004.5.1.1.11");

  const std::string key2 = ca.key("k2.pem");
  const std::string csr2 = ca.file("r2.csr");
  REQUIRE(t::run({"openssl", "req", "-new", "-key", key2, "-subj", "/CN=csr", "-out", csr2}).exitCode == 0);
  const std::string cert2 = ca.file("c2.pem");
  requireAccepted(ca.cmp(server, {"-cmd", "p10cr", "-csr", csr2, "-cert", cert1, "-key", key1, "-certout", cert2,
                                  "-geninfo", feeAck(2200)}));
  CHECK(t::certificateMatchesKey(cert2, key2));
  CHECK(t::inspectCertificate(cert2).subjectUtf8 == t::inspectCertificate(cert1).subjectUtf8);

  const nlohmann::json ledger = ca.ledgerJson();
  REQUIRE(ledger.size() == 2);
  CHECK(ledger[0].at("amount_krw") == 2200);
  CHECK(ledger[0].at("kind") == "issue");
  CHECK(ledger[1].at("amount_krw") == 2200);
  CHECK(ledger[1].at("kind") == "renewal");
  CHECK(ledger[1].at("serial") == t::inspectCertificate(cert2).serialHex);
}

TEST_CASE("reissue revokes the previous certificate, keeps its expiry and is free", "[ca][ca-reissue]") {
  CaFixture ca;
  t::CaServer server(ca.caDir(), {"--test-validity-days", "100"});
  const std::string key1 = ca.key("k1.pem");
  const std::string cert1 = ca.file("c1.pem");
  Code code = ca.enrollCode("signkorea-general-personal", kHong);
  requireAccepted(ca.enrol(server, code, key1, cert1, {"-geninfo", feeAck(4400)}));

  Code again = ca.enrollCode("signkorea-general-personal", kHong, {"--reissue"});
  CHECK(again.raw.at("reissue_of") == t::inspectCertificate(cert1).serialHex);
  CHECK(again.raw.at("fee_krw") == 0);
  const std::string key2 = ca.key("k2.pem");
  const std::string cert2 = ca.file("c2.pem");
  requireAccepted(ca.enrol(server, again, key2, cert2));

  const t::CertificateFacts original = t::inspectCertificate(cert1);
  const t::CertificateFacts reissued = t::inspectCertificate(cert2);
  CHECK(t::certificateMatchesKey(cert2, key2));
  CHECK(reissued.notAfter == original.notAfter);
  CHECK(reissued.subjectUtf8 == original.subjectUtf8);
  CHECK(reissued.firstPolicyOid == original.firstPolicyOid);
  const nlohmann::json list = ca.listJson();
  REQUIRE(list.size() == 2);
  CHECK(list[0].at("serial") == original.serialHex);
  CHECK(list[0].at("status") == "revoked");
  CHECK(list[1].at("origin") == "reissue");
  CHECK(list[1].at("replaces") == original.serialHex);
  CHECK(ca.ledgerJson().size() == 1);  // only the first issuance was charged

  // The revoked original can no longer renew.
  requireRejected(ca.renew(server, cert1, key1, ca.key("k3.pem"), ca.file("x.pem"), {"-geninfo", feeAck(4400)}),
                  "was revoked on");

  // The operator's revocation command, with the serial in any case and with leading zeros.
  std::string lowerSerial = "00" + reissued.serialHex;
  for (char& c : lowerSerial) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  t::CommandResult revoke = t::run({t::dojangCa(), "revoke", "--dir", ca.caDir(), "--serial", lowerSerial});
  INFO(revoke.output);
  CHECK(revoke.exitCode == 0);
  t::CommandResult revokeAgain = t::run({t::dojangCa(), "revoke", "--dir", ca.caDir(), "--serial", reissued.serialHex});
  CHECK(revokeAgain.exitCode != 0);
  CHECK(revokeAgain.output.find("already revoked") != std::string::npos);
  CHECK(ca.listJson()[1].at("status") == "revoked");
}

TEST_CASE("malformed HTTP requests get a 4xx, change nothing, and the server keeps serving", "[ca][ca-malformed-http]") {
  CaFixture ca;
  t::CaServer server(ca.caDir());
  const std::string key1 = ca.key("k1.pem");
  Code code = ca.enrollCode("signkorea-creditcard", kHong);  // 신용카드: free
  CHECK(code.raw.at("fee_krw") == 0);

  // Capture a real CMP request (rejected: wrong code) to truncate it.
  const std::string requestDer = ca.file("ir.der");
  requireRejected(ca.enrol(server, Code{code.reference, "NOTTHECODE", {}}, key1, ca.file("x.pem"),
                           {"-reqout", requestDer}),
                  "authorization code is wrong");
  const std::string wholeRequest = t::readFile(requestDer);
  REQUIRE(wholeRequest.size() > 100);

  const std::string random = ca.file("random.bin");
  t::writeFile(random, std::string("\x30\x82\xff\xff not a CMP message, just bytes \x01\x02\x03", 38));
  const std::string truncated = ca.file("truncated.der");
  t::writeFile(truncated, wholeRequest.substr(0, wholeRequest.size() / 2));
  const std::string trailing = ca.file("trailing.der");
  t::writeFile(trailing, wholeRequest + "junk");
  const std::string large = ca.file("large.bin");
  t::writeFile(large, std::string(70 * 1024, '\x30'));

  const std::string cmpType = "Content-Type: application/pkixcmp";
  const std::string url = server.url("/");
  CHECK(httpStatus({"-H", cmpType, "--data-binary", "@" + random, url}) == "400");
  CHECK(httpStatus({"-H", cmpType, "--data-binary", "@" + truncated, url}) == "400");
  CHECK(httpStatus({"-H", cmpType, "--data-binary", "@" + trailing, url}) == "400");
  CHECK(httpStatus({"-H", cmpType, "--data-binary", "", url}) == "400");  // empty body
  CHECK(httpStatus({"-H", cmpType, "-H", "Transfer-Encoding:", "-H", "Content-Length:", "-X", "POST", url}) == "411");
  CHECK(httpStatus({"-H", cmpType, "--data-binary", "@" + large, url}) == "413");
  CHECK(httpStatus({"-H", cmpType, "-H", "Content-Length: 1000000000", "--data-binary", "@" + random, url}) == "413");
  CHECK(httpStatus({"-H", "Content-Type: text/plain", "--data-binary", "@" + requestDer, url}) == "415");
  CHECK(httpStatus({"--data-binary", "@" + requestDer, url}) == "415");  // curl's default form type
  CHECK(server.running());
  CHECK(ca.listJson().empty());
  CHECK(ca.ledgerJson().empty());

  // Still serving CMP: the untouched code works.
  const std::string cert1 = ca.file("c1.pem");
  requireAccepted(ca.enrol(server, code, key1, cert1));
  CHECK(t::inspectCertificate(cert1).firstPolicyOid == "1.2.410.200004.5.1.1.9.2");
  CHECK(httpStatus({server.url("/crl")}) == "200");
  CHECK(ca.listJson().size() == 1);
}

TEST_CASE("stalled connections do not hold up concurrent enrolments", "[ca][ca-slow-clients]") {
  constexpr size_t kStalled = 50;
  constexpr size_t kEnrolments = 20;
  CaFixture ca;
  t::CaServer server(ca.caDir());
  std::vector<Code> codes;
  std::vector<std::string> keys;
  for (size_t i = 0; i < kEnrolments; ++i) {
    codes.push_back(ca.enrollCode("signkorea-creditcard", "cn=동시" + std::to_string(i) + "()0001234567890123,ou=개인"));
    keys.push_back(ca.key("k" + std::to_string(i) + ".pem"));
  }

  std::vector<std::unique_ptr<t::StalledClient>> stalled;
  for (size_t i = 0; i < kStalled; ++i) {
    stalled.push_back(std::make_unique<t::StalledClient>(server.port()));
  }

  std::vector<std::function<t::CommandResult()>> enrolments;
  for (size_t i = 0; i < kEnrolments; ++i) {
    enrolments.emplace_back([&, i]() {
      // -total_timeout: a stuck enrolment fails instead of hanging the test.
      return ca.enrol(server, codes[i], keys[i], ca.file("c" + std::to_string(i) + ".pem"), {"-total_timeout", "20"});
    });
  }
  const auto started = std::chrono::steady_clock::now();
  const std::vector<t::CommandResult> results = runConcurrently(enrolments);
  const auto elapsed = std::chrono::steady_clock::now() - started;

  for (const t::CommandResult& result : results) {
    requireAccepted(result);
  }
  // A hang-catcher, not a speed test: with stalled clients holding every worker this took 25 s+.
  CHECK(elapsed < std::chrono::seconds(15));
  CHECK(ca.listJson().size() == kEnrolments);
  // The server gave up on the stalled clients on its own, within its header timeout.
  size_t dropped = 0;
  for (auto& client : stalled) {
    dropped += client->closedByServerWithin(10) ? 1 : 0;
  }
  CHECK(dropped == kStalled);
  CHECK(server.running());
}

TEST_CASE("concurrent requests cannot use one reference code twice or renew one certificate twice",
          "[ca][ca-concurrent-state]") {
  constexpr size_t kRacers = 6;
  CaFixture ca;
  // Issued certificates expire in 20 days, inside the 30-day renewal window.
  t::CaServer server(ca.caDir(), {"--test-validity-days", "20"});
  const Code code = ca.enrollCode("signkorea-creditcard", kHong);
  std::vector<std::string> keys;
  for (size_t i = 0; i < kRacers; ++i) {
    keys.push_back(ca.key("k" + std::to_string(i) + ".pem"));
  }
  auto successes = [](const std::vector<t::CommandResult>& results) {
    size_t accepted = 0;
    for (const t::CommandResult& result : results) {
      accepted += result.exitCode == 0 ? 1 : 0;
    }
    return accepted;
  };

  std::vector<std::function<t::CommandResult()>> enrolments;
  for (size_t i = 0; i < kRacers; ++i) {
    enrolments.emplace_back([&, i]() {
      return ca.enrol(server, code, keys[i], ca.file("c" + std::to_string(i) + ".pem"), {"-total_timeout", "20"});
    });
  }
  const std::vector<t::CommandResult> issued = runConcurrently(enrolments);
  REQUIRE(successes(issued) == 1);
  for (const t::CommandResult& result : issued) {
    if (result.exitCode != 0) {
      requireRejected(result, "was already used");
    }
  }
  REQUIRE(ca.listJson().size() == 1);

  size_t winner = 0;
  while (issued[winner].exitCode != 0) {
    ++winner;
  }
  const std::string cert = ca.file("c" + std::to_string(winner) + ".pem");
  std::vector<std::string> newKeys;
  for (size_t i = 0; i < kRacers; ++i) {
    newKeys.push_back(ca.key("n" + std::to_string(i) + ".pem"));
  }
  std::vector<std::function<t::CommandResult()>> renewals;
  for (size_t i = 0; i < kRacers; ++i) {
    renewals.emplace_back([&, i]() {
      return ca.renew(server, cert, keys[winner], newKeys[i], ca.file("r" + std::to_string(i) + ".pem"),
                      {"-total_timeout", "20"});
    });
  }
  const std::vector<t::CommandResult> renewed = runConcurrently(renewals);
  CHECK(successes(renewed) == 1);
  for (const t::CommandResult& result : renewed) {
    if (result.exitCode != 0) {
      requireRejected(result, "was already renewed");
    }
  }
  CHECK(ca.listJson().size() == 2);
  CHECK(ca.ledgerJson().empty());  // 신용카드 is free
  CHECK(server.running());
}
