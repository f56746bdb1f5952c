// The world the real-client tests share: one SoftHSM token behind one dojangd, an RSA 2048 and an
// ECDSA P-256 key generated on the token through dojang-pkcs11.so, and for each a client
// certificate from a test CA (made with openssl on the host, public data only) written to the token
// with the key's CKA_ID. Clients run with a SOFTHSM2_CONF that leads nowhere, so the token is only
// reachable through dojang.
//
// How the client gets the PIN is decided in ONE place, pinSource() and the ClientPin helpers
// below: dojangd's prompt mode, where the test pinentry answers every prompt with the PIN and the
// clients are given none; or classic mode, where the client gives it (pin-value in the URI,
// tstclnt -w, ssh's SSH_ASKPASS).
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "tests/support/dojangd_process.h"
#include "tests/support/run_command.h"
#include "tests/support/softhsm_token.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_pinentry.h"
#include "tests/support/tls_peers.h"

namespace dojang::test {

enum class PinSource {
  Client,    // classic mode: the application logs in with the PIN it was given
  Pinentry,  // prompt mode: dojangd asks the test pinentry; the application is given no PIN
};

// The one switch between the two.
PinSource pinSource();

struct TokenKey {
  std::string id;       // CKA_ID, hex
  std::string label;    // CKA_LABEL of the key pair and the certificate
  std::string subject;  // "/O=dojang tests/CN=..."
  std::string commonName;
};

// Everything a client needs to be handed for the PIN under pinSource().
class ClientPin final {
 public:
  ClientPin(std::string pin, std::filesystem::path directory);

  // ";pin-value=PIN" for a pkcs11: URI, or nothing.
  [[nodiscard]] std::string uriAttribute() const;
  // {"-w", PIN} for tstclnt / certutil -f style NSS tools, or nothing.
  [[nodiscard]] std::vector<std::string> nssPasswordArgs() const;
  // SSH_ASKPASS (a script that prints the PIN) forced for ssh and ssh-add, or nothing.
  [[nodiscard]] std::map<std::string, std::string> sshEnv() const;
  // How many times ssh asked its SSH_ASKPASS so far.
  [[nodiscard]] int askpassCalls() const;

 private:
  std::string m_pin;
  std::filesystem::path m_directory;
};

class RealClientsFixture final {
 public:
  static constexpr const char* kTokenLabel = "dojang-tls";
  static constexpr const char* kPin = "1234";

  RealClientsFixture();
  ~RealClientsFixture();
  RealClientsFixture(const RealClientsFixture&) = delete;
  RealClientsFixture& operator=(const RealClientsFixture&) = delete;

  [[nodiscard]] static const TokenKey& rsaKey();
  [[nodiscard]] static const TokenKey& ecKey();

  // The environment for clients: the daemon's, SOFTHSM2_CONF leading nowhere, and `extra`.
  [[nodiscard]] std::map<std::string, std::string> clientEnv(
      const std::map<std::string, std::string>& extra = {}) const;
  CommandResult run(const std::vector<std::string>& argv,
                    const std::map<std::string, std::string>& extraEnv = {},
                    std::chrono::seconds timeout = std::chrono::seconds(30),
                    const std::string& input = {}) const;
  [[nodiscard]] std::filesystem::path file(const std::string& name) const { return m_files / name; }
  [[nodiscard]] const std::string& module() const noexcept { return m_module; }
  [[nodiscard]] TestCa& ca() noexcept { return m_ca; }
  [[nodiscard]] const ClientPin& pin() const noexcept { return m_pin; }
  [[nodiscard]] DojangdProcess& daemon() noexcept { return m_daemon; }
  // What dojangd's prompts said (prompt mode).
  [[nodiscard]] const TestPinentry& pinentry() const noexcept { return m_pinentry; }
  // The certificate of `key` as PEM (the same bytes as the one on the token).
  [[nodiscard]] std::filesystem::path certificatePem(const TokenKey& key) const {
    return file(key.label + ".cert.pem");
  }
  // pkcs11:token=...;object=LABEL;type=private plus the PIN attribute of ClientPin.
  [[nodiscard]] std::string privateKeyUri(const TokenKey& key) const;

  // A fresh NSS DB at DIR with dojang-pkcs11.so added by modutil and the test CA trusted for TLS
  // servers; returns "sql:DIR".
  std::string makeNssDb(const std::filesystem::path& directory);
  // The test CA trusted for TLS servers in the NSS DB at DIR.
  void trustTestCa(const std::filesystem::path& directory) const;

 private:
  void generateKeyWithCertificate(const TokenKey& key, const std::string& keyType);

  SoftHsmToken m_token;
  TempDir m_pinentryDir{"dojang-real-clients-pinentry-"};
  TestPinentry m_pinentry;
  DojangdProcess m_daemon;
  TempDir m_files{"dojang-real-clients-"};
  std::string m_module;
  TestCa m_ca;
  ClientPin m_pin;
};

// "exit N\nstdout: ...\nstderr: ..." for a failing assertion's message.
std::string describe(const CommandResult& result);
bool contains(const std::string& text, const std::string& part);

}  // namespace dojang::test
