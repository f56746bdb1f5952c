#include "tests/integration/real_clients_fixture.h"

#include <sys/stat.h>

#include <sstream>
#include <stdexcept>

namespace dojang::test {

PinSource pinSource() {
  return PinSource::Pinentry;
}

namespace {

// Every prompt of a test answers with the token's PIN.
constexpr int kAnswers = 64;

// The daemon's settings that go with pinSource(): prompt mode asks the test pinentry.
DojangdOptions daemonOptions(const TestPinentry& pinentry) {
  if (pinSource() == PinSource::Client) {
    return {};
  }
  DojangdOptions options;
  options.env = pinentry.env();
  options.pinSettings = TestPinentry::pinSettings("mode = \"prompt\"\ntimeout_seconds = 60");
  return options;
}

void mustSucceed(const CommandResult& result, const std::string& what) {
  if (result.exitCode != 0) {
    throw std::runtime_error(what + ": " + describe(result));
  }
}

}  // namespace

std::string describe(const CommandResult& result) {
  std::ostringstream text;
  text << "exit " << result.exitCode << (result.timedOut ? " (timed out)" : "") << "\nstdout: " << result.out
       << "\nstderr: " << result.err;
  return text.str();
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

ClientPin::ClientPin(std::string pin, std::filesystem::path directory)
    : m_pin(std::move(pin)), m_directory(std::move(directory)) {
  // In prompt mode ssh must not ask at all: the script then answers nothing and fails, and every
  // call is counted either way.
  const auto calls = (m_directory / "askpass.calls").string();
  const auto script = m_directory / "askpass.sh";
  writeFile(script, "#!/bin/sh\necho \"$*\" >> '" + calls + "'\n" +
                        (pinSource() == PinSource::Client ? "echo '" + m_pin + "'\n" : "exit 1\n"));
  ::chmod(script.c_str(), 0700);
}

std::string ClientPin::uriAttribute() const {
  return pinSource() == PinSource::Client ? ";pin-value=" + m_pin : std::string();
}

std::vector<std::string> ClientPin::nssPasswordArgs() const {
  if (pinSource() == PinSource::Client) {
    return {"-w", m_pin};
  }
  return {};
}

std::map<std::string, std::string> ClientPin::sshEnv() const {
  return {{"SSH_ASKPASS", (m_directory / "askpass.sh").string()}, {"SSH_ASKPASS_REQUIRE", "force"}};
}

int ClientPin::askpassCalls() const {
  const auto calls = m_directory / "askpass.calls";
  if (!std::filesystem::exists(calls)) {
    return 0;
  }
  const auto text = readFile(calls);
  int lines = 0;
  for (const char c : text) {
    lines += c == '\n' ? 1 : 0;
  }
  return lines;
}

const TokenKey& RealClientsFixture::rsaKey() {
  static const TokenKey key{"01", "rsa", "/O=dojang tests/CN=dojang tls rsa", "dojang tls rsa"};
  return key;
}

const TokenKey& RealClientsFixture::ecKey() {
  static const TokenKey key{"02", "ec", "/O=dojang tests/CN=dojang tls ec", "dojang tls ec"};
  return key;
}

RealClientsFixture::RealClientsFixture()
    : m_token({kTokenLabel, kPin, "12345678"}),
      m_pinentry(m_pinentryDir.path()),
      m_daemon(m_token, daemonOptions(m_pinentry)),
      m_module(dojangModulePath()),
      m_ca(m_files / "ca"),
      m_pin(kPin, m_files.path()) {
  m_pinentry.answers(std::vector<std::string>(kAnswers, std::string("pin:") + kPin));
  generateKeyWithCertificate(rsaKey(), "rsa:2048");
  generateKeyWithCertificate(ecKey(), "EC:prime256v1");
}

RealClientsFixture::~RealClientsFixture() {
  if (m_daemon.running()) {
    m_daemon.stop();
  }
}

std::map<std::string, std::string> RealClientsFixture::clientEnv(
    const std::map<std::string, std::string>& extra) const {
  auto env = m_daemon.env();
  env["SOFTHSM2_CONF"] = file("no-softhsm.conf").string();  // no way around dojang
  env["DISPLAY"] = ":dojang-test";  // where dojangd's prompt shows (the test pinentry shows nothing)
  for (const auto& [name, value] : extra) {
    env[name] = value;
  }
  return env;
}

CommandResult RealClientsFixture::run(const std::vector<std::string>& argv,
                                      const std::map<std::string, std::string>& extraEnv,
                                      std::chrono::seconds timeout, const std::string& input) const {
  CommandOptions options;
  options.env = clientEnv(extraEnv);
  options.timeout = timeout;
  options.input = input;
  return runCommand(argv, options);
}

std::string RealClientsFixture::privateKeyUri(const TokenKey& key) const {
  return std::string("pkcs11:token=") + kTokenLabel + ";object=" + key.label + ";type=private" +
         m_pin.uriAttribute();
}

// Setting up the token is not what the tests are about: pkcs11-tool logs in with the PIN in
// either mode.
void RealClientsFixture::generateKeyWithCertificate(const TokenKey& key, const std::string& keyType) {
  const std::vector<std::string> tool = {"pkcs11-tool", "--module", m_module, "--token-label", kTokenLabel};
  auto withLogin = [&](std::vector<std::string> args) {
    auto argv = tool;
    argv.insert(argv.end(), {"--login", "--pin", kPin});
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  };
  mustSucceed(run(withLogin({"--keypairgen", "--key-type", keyType, "--id", key.id, "--label", key.label})),
              "pkcs11-tool --keypairgen " + keyType);
  const auto publicDer = file(key.label + ".pub.der");
  auto read = tool;
  read.insert(read.end(), {"--read-object", "--type", "pubkey", "--id", key.id, "-o", publicDer.string()});
  mustSucceed(run(read), "pkcs11-tool --read-object pubkey " + key.id);
  const auto publicPem = file(key.label + ".pub.pem");
  mustSucceed(runCommand({"openssl", "pkey", "-pubin", "-inform", "DER", "-in", publicDer.string(), "-out",
                          publicPem.string()}),
              "openssl pkey");
  const auto certificateDer = file(key.label + ".cert.der");
  m_ca.issueClientCertificate(publicPem, key.subject, certificateDer);
  mustSucceed(runCommand({"openssl", "x509", "-inform", "DER", "-in", certificateDer.string(), "-out",
                          certificatePem(key).string()}),
              "openssl x509 -outform PEM");
  mustSucceed(run(withLogin({"--write-object", certificateDer.string(), "--type", "cert", "--id", key.id,
                             "--label", key.label})),
              "pkcs11-tool --write-object cert " + key.id);
}

std::string RealClientsFixture::makeNssDb(const std::filesystem::path& directory) {
  std::filesystem::create_directories(directory);
  const std::string db = "sql:" + directory.string();
  mustSucceed(runCommand({"certutil", "-N", "-d", db, "--empty-password"}), "certutil -N");
  // modutil asks "type 'q' <enter>" about running browsers unless -force.
  mustSucceed(run({"modutil", "-dbdir", db, "-add", "dojang", "-libfile", m_module, "-force"}),
              "modutil -add");
  trustTestCa(directory);
  return db;
}

void RealClientsFixture::trustTestCa(const std::filesystem::path& directory) const {
  mustSucceed(runCommand({"certutil", "-A", "-d", "sql:" + directory.string(), "-n", "dojang-test-ca", "-t", "C,,",
                          "-a", "-i", m_ca.certificate().string()}),
              "certutil -A (trust the test CA)");
}

}  // namespace dojang::test
