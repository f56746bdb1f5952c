// The renewal tests' shared fixture (renewal_fixture.h).
#include "tests/integration/renewal_fixture.h"

#include <catch2/catch.hpp>
#include <cstdlib>
#include <fstream>
#include <stdexcept>

#include "tests/support/openssl_engine.h"

namespace dojang::test {

namespace catest = dojang::ca::test;

namespace {

constexpr const char* kFeeOid = "2.25.291284094336645414261949578006134921605.1";

}  // namespace

std::string dojangCli() {
  const char* path = std::getenv("DOJANG_CLI");
  if (path == nullptr) {
    throw std::runtime_error("DOJANG_CLI is not set (run through meson test)");
  }
  return path;
}

void writeText(const std::filesystem::path& path, const std::string& text) {
  std::ofstream(path) << text;
}

std::size_t count(const std::string& text, const std::string& what) {
  std::size_t found = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) {
    ++found;
  }
  return found;
}

RenewalFixture::RenewalFixture(const std::string& keyType, const std::vector<std::string>& caArgs,
                               bool firstCertificate, const DojangdOptions& daemonOptions)
    : daemon(token, daemonOptions), caDir(work.path() / "ca") {
  env = daemon.env();
  env["DOJANG_MODULE"] = dojangModulePath();
  env["XDG_STATE_HOME"] = (work.path() / "state").string();
  env["XDG_CONFIG_HOME"] = (work.path() / "config").string();
  REQUIRE(catest::run({catest::dojangCa(), "init", "--dir", caDir.string()}).exitCode == 0);
  server = std::make_unique<catest::CaServer>(caDir.string(), caArgs);
  if (firstCertificate) {
    REQUIRE(run({"pkcs11-tool", "--module", dojangModulePath(), "--login", "--pin", token.pin(),
                 "--keypairgen", "--key-type", keyType, "--id", "01", "--label", kRenewalLabel})
                .exitCode == 0);
    enrol();
  }
  writeText(work.path() / "renewal.toml", "[renewal]\ndefault_ca = \"test\"\n[ca.test]\nurl = \"" +
                                              server->url("/") + "\"\ntrusted = \"" +
                                              (caDir / "ca.cert.pem").string() + "\"\ntimeout_seconds = 3\n" +
                                              (caArgs.empty() ? "" : "validity_days = 20\n"));
}

CommandResult RenewalFixture::run(const std::vector<std::string>& argv, const std::string& input) const {
  CommandOptions options;
  options.env = env;
  options.input = input;
  return runCommand(argv, options);
}

nlohmann::json enrolmentCodeFor(const std::filesystem::path& caDir, const std::string& profile) {
  const auto code = catest::run({catest::dojangCa(), "enroll-code", "--dir", caDir.string(), "--profile",
                                 profile, "--subject", "cn=홍길동()0001234567890123,ou=개인", "--json"});
  REQUIRE(code.exitCode == 0);
  return nlohmann::json::parse(code.output.substr(code.output.find('{')));
}

void enrolFirstCertificate(const FirstCertificate& first) {
  const auto codes = enrolmentCodeFor(first.caDir, first.profile);
  writeText(first.work / "openssl.cnf", pkcs11EngineConfig(dojangModulePath()));
  CommandOptions options;
  options.env = first.env;
  options.env["OPENSSL_CONF"] = (first.work / "openssl.cnf").string();
  const std::string keyUri = "pkcs11:token=" + first.token.label() + ";object=" + kRenewalLabel +
                             ";type=private;pin-value=" + first.token.pin();
  std::vector<std::string> argv = {"openssl",  "cmp",
                                   "-cmd",     "ir",
                                   "-server",  first.caHostPort,
                                   "-path",    "/",
                                   "-trusted", (first.caDir / "ca.cert.pem").string(),
                                   "-ref",     codes["reference"].get<std::string>(),
                                   "-secret",  "pass:" + codes["authorization_code"].get<std::string>(),
                                   "-engine",  "pkcs11",
                                   "-keyform", "ENGINE",
                                   "-newkey",  keyUri,
                                   "-subject", "/CN=applicant",
                                   "-certout", (first.work / "first.pem").string()};
  if (first.feeKrw > 0) {
    argv.insert(argv.end(), {"-geninfo", std::string(kFeeOid) + ":int:" + std::to_string(first.feeKrw)});
  }
  const auto ir = runCommand(argv, options);
  INFO(ir.out << ir.err);
  REQUIRE(ir.exitCode == 0);
  CommandOptions plain;
  plain.env = first.env;
  REQUIRE(runCommand({"openssl", "x509", "-in", (first.work / "first.pem").string(), "-outform", "DER",
                      "-out", (first.work / "first.der").string()},
                     plain)
              .exitCode == 0);
  REQUIRE(runCommand({"pkcs11-tool", "--module", dojangModulePath(), "--login", "--pin", first.token.pin(),
                      "--write-object", (first.work / "first.der").string(), "--type", "cert", "--id", "01",
                      "--label", kRenewalLabel},
                     plain)
              .exitCode == 0);
}

nlohmann::json RenewalFixture::enrolmentCode() const {
  return enrolmentCodeFor(caDir, "signkorea-general-personal");
}

void RenewalFixture::enrol() {
  enrolFirstCertificate(
      {work.path(), env, token, server->hostPort(), caDir, "signkorea-general-personal", 4400});
}

CommandResult RenewalFixture::renew(const std::vector<std::string>& extra, const std::string& pin,
                                    const std::string& cli,
                                    const std::map<std::string, std::string>& moreEnv) const {
  std::vector<std::string> argv = {cli.empty() ? dojangCli() : cli, "renew", "--config",
                                   (work.path() / "renewal.toml").string(), "--pin-stdin"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  CommandOptions options;
  options.env = env;
  for (const auto& [name, value] : moreEnv) {
    options.env[name] = value;
  }
  options.input = pin + "\n";
  return runCommand(argv, options);
}

std::string RenewalFixture::objects() const {
  return run({"pkcs11-tool", "--module", dojangModulePath(), "--login", "--pin", token.pin(),
              "--list-objects"})
      .out;
}

}  // namespace dojang::test
