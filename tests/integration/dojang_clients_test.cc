// Real PKCS#11 clients through dojang-pkcs11.so against a real dojangd serving a fresh SoftHSM
// token: OpenSC pkcs11-tool, NSS (modutil, certutil), ssh-keygen and OpenSSL through libp11's
// engine. The clients are given a SOFTHSM2_CONF that leads nowhere, so the only way they can reach
// the token is through dojang.
#include <catch2/catch.hpp>

#include <map>
#include <string>
#include <vector>

#include "tests/support/dojangd_process.h"
#include "tests/support/openssl_engine.h"
#include "tests/support/run_command.h"
#include "tests/support/softhsm_token.h"
#include "tests/support/temp_dir.h"

namespace {

using dojang::test::CommandOptions;
using dojang::test::CommandResult;
using dojang::test::DojangdProcess;
using dojang::test::dojangModulePath;
using dojang::test::readFile;
using dojang::test::runCommand;
using dojang::test::SoftHsmToken;
using dojang::test::TempDir;
using dojang::test::writeFile;

constexpr const char* kTokenLabel = "dojang-clients";
constexpr const char* kPin = "1234";
constexpr const char* kRsaId = "01";
constexpr const char* kEcId = "02";

void requireOk(const CommandResult& result, const std::string& what) {
  INFO(what << "\nexit: " << result.exitCode << "\nstdout: " << result.out << "\nstderr: " << result.err);
  REQUIRE(result.exitCode == 0);
}

// For steps after which the test can go on: the failure is recorded, the next step still runs.
bool checkOk(const CommandResult& result, const std::string& what) {
  INFO(what << "\nexit: " << result.exitCode << "\nstdout: " << result.out << "\nstderr: " << result.err);
  CHECK(result.exitCode == 0);
  return result.exitCode == 0;
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// One token behind one dojangd; helpers run clients with the daemon's environment.
struct Fixture {
  SoftHsmToken token{{kTokenLabel, kPin, "12345678"}};
  DojangdProcess daemon{token};
  TempDir files{"dojang-clients-"};
  std::string module = dojangModulePath();

  ~Fixture() {
    if (daemon.running()) {
      const int status = daemon.stop();
      if (status != 0) {
        WARN("dojangd did not stop cleanly (status " << status << "); log:\n" << daemon.log());
      }
    }
  }

  [[nodiscard]] std::map<std::string, std::string> clientEnv() const {
    auto env = daemon.env();
    env["SOFTHSM2_CONF"] = (files / "no-softhsm.conf").string();  // no way around dojang
    return env;
  }

  [[nodiscard]] std::string file(const std::string& name) const { return (files / name).string(); }

  CommandResult run(const std::vector<std::string>& argv, const std::string& input = {}) const {
    CommandOptions options;
    options.env = clientEnv();
    options.input = input;
    options.timeout = std::chrono::seconds(120);
    return runCommand(argv, options);
  }

  // pkcs11-tool --module M --token-label L [--login --pin P] args...
  CommandResult tool(std::vector<std::string> args, bool login = false) const {
    std::vector<std::string> argv = {"pkcs11-tool", "--module", module, "--token-label", kTokenLabel};
    if (login) {
      argv.insert(argv.end(), {"--login", "--pin", kPin});
    }
    argv.insert(argv.end(), args.begin(), args.end());
    return run(argv);
  }

  void generateKeys() {
    requireOk(tool({"--keypairgen", "--key-type", "rsa:2048", "--id", kRsaId, "--label", "rsa"}, true),
              "pkcs11-tool --keypairgen rsa:2048");
    requireOk(tool({"--keypairgen", "--key-type", "EC:prime256v1", "--id", kEcId, "--label", "ec"}, true),
              "pkcs11-tool --keypairgen EC:prime256v1");
  }

  // The token's public key read back through dojang, as PEM in <name>.pub.pem.
  std::string readPublicKey(const std::string& id, const std::string& name) {
    const auto der = file(name + ".pub.der");
    requireOk(tool({"--read-object", "--type", "pubkey", "--id", id, "-o", der}), "pkcs11-tool --read-object " + id);
    const auto pem = file(name + ".pub.pem");
    requireOk(runCommand({"openssl", "pkey", "-pubin", "-inform", "DER", "-in", der, "-out", pem}),
              "openssl pkey " + der);
    return pem;
  }

  // A certificate for the token's key <id>, issued by a throwaway software CA, written to the
  // token with the same CKA_ID (so NSS pairs it with the key).
  void writeCertificate(const std::string& id, const std::string& name) {
    const auto caKey = file("ca.key.pem");
    const auto caCert = file("ca.pem");
    if (!std::filesystem::exists(caKey)) {
      requireOk(runCommand({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                            "-nodes", "-keyout", caKey, "-subj", "/CN=dojang throwaway CA", "-days", "2", "-out",
                            caCert}),
                "openssl req (CA)");
    }
    const auto publicKey = readPublicKey(id, name);
    const auto request = file(name + ".csr.pem");
    requireOk(runCommand({"openssl", "req", "-new", "-key", caKey, "-subj", "/CN=dojang " + name, "-out", request}),
              "openssl req (placeholder request)");
    const auto certificate = file(name + ".cert.der");
    requireOk(runCommand({"openssl", "x509", "-req", "-in", request, "-CA", caCert, "-CAkey", caKey,
                          "-force_pubkey", publicKey, "-days", "2", "-outform", "DER", "-out", certificate}),
              "openssl x509 -force_pubkey");
    requireOk(tool({"--write-object", certificate, "--type", "cert", "--id", id, "--label", name}, true),
              "pkcs11-tool --write-object " + certificate);
  }

  void prepareKeysAndCertificates() {
    generateKeys();
    writeCertificate(kRsaId, "rsa");
    writeCertificate(kEcId, "ec");
  }
};

}  // namespace

TEST_CASE("pkcs11-tool lists, generates, writes and signs through dojang", "[integration][clients]") {
  Fixture fixture;

  const auto listing = fixture.tool({"-L"});
  requireOk(listing, "pkcs11-tool -L");
  CHECK(contains(listing.out, std::string("token label        : ") + kTokenLabel));
  CHECK(contains(listing.out, "SoftHSM project"));

  fixture.prepareKeysAndCertificates();

  const auto objects = fixture.tool({"-O"}, true);
  requireOk(objects, "pkcs11-tool -O");
  INFO(objects.out);
  CHECK(contains(objects.out, "Private Key Object; RSA"));
  CHECK(contains(objects.out, "Private Key Object; EC"));
  CHECK(contains(objects.out, "Public Key Object; RSA 2048 bits"));
  CHECK(contains(objects.out, "Public Key Object; EC"));
  CHECK(contains(objects.out, "Certificate Object; type = X.509 cert"));
  CHECK(contains(objects.out, "CN=dojang rsa"));
  CHECK(contains(objects.out, "CN=dojang ec"));
  // Without a login the private keys stay hidden.
  const auto publicOnly = fixture.tool({"-O"});
  requireOk(publicOnly, "pkcs11-tool -O without login");
  CHECK_FALSE(contains(publicOnly.out, "Private Key Object"));
  CHECK(contains(publicOnly.out, "Certificate Object"));

  const auto data = fixture.file("data.txt");
  writeFile(data, "dojang signs this through pkcs11-tool\n");
  const auto rsaPublic = fixture.file("rsa.pub.pem");
  const auto ecPublic = fixture.file("ec.pub.pem");

  {  // ECDSA over a SHA-256 hash verifies with openssl
    const auto hash = fixture.file("data.sha256");
    requireOk(runCommand({"openssl", "dgst", "-sha256", "-binary", "-out", hash, data}), "openssl dgst");
    const auto signature = fixture.file("ec.sig");
    if (checkOk(fixture.tool({"--sign", "-m", "ECDSA", "--id", kEcId, "-i", hash, "-o", signature,
                              "--signature-format", "openssl"},
                             true),
                "pkcs11-tool --sign -m ECDSA")) {
      checkOk(runCommand({"openssl", "dgst", "-sha256", "-verify", ecPublic, "-signature", signature, data}),
              "openssl verifies the ECDSA signature");
    }
  }

  {  // SHA256-RSA-PKCS verifies with openssl
    const auto signature = fixture.file("rsa.sig");
    if (checkOk(fixture.tool({"--sign", "-m", "SHA256-RSA-PKCS", "--id", kRsaId, "-i", data, "-o", signature}, true),
                "pkcs11-tool --sign -m SHA256-RSA-PKCS")) {
      checkOk(runCommand({"openssl", "dgst", "-sha256", "-verify", rsaPublic, "-signature", signature, data}),
              "openssl verifies the PKCS#1 v1.5 signature");
    }
  }

  {  // SHA256-RSA-PKCS-PSS verifies with openssl (salt = hash length, as pkcs11-tool asks)
    const auto signature = fixture.file("pss.sig");
    if (checkOk(
            fixture.tool({"--sign", "-m", "SHA256-RSA-PKCS-PSS", "--id", kRsaId, "-i", data, "-o", signature}, true),
            "pkcs11-tool --sign -m SHA256-RSA-PKCS-PSS")) {
      checkOk(runCommand({"openssl", "dgst", "-sha256", "-verify", rsaPublic, "-sigopt", "rsa_padding_mode:pss",
                          "-sigopt", "rsa_pss_saltlen:32", "-signature", signature, data}),
              "openssl verifies the PSS signature");
    }
  }

  CHECK(fixture.daemon.stop() == 0);
}

TEST_CASE("pkcs11-tool --test passes through dojang", "[integration][clients]") {
  Fixture fixture;
  fixture.generateKeys();
  const auto result = fixture.tool({"--test"}, true);
  INFO("exit: " << result.exitCode << "\nstdout: " << result.out << "\nstderr: " << result.err
                << "\ndojangd log:\n"
                << fixture.daemon.log());
  CHECK(result.exitCode == 0);
  CHECK_FALSE(contains(result.out + result.err, "failed"));
  CHECK(fixture.daemon.stop() == 0);
}

TEST_CASE("NSS lists the certificates and keys on the dojang token", "[integration][clients][nss]") {
  Fixture fixture;
  fixture.prepareKeysAndCertificates();

  const auto db = "sql:" + fixture.file("nssdb");
  std::filesystem::create_directory(fixture.files / "nssdb");
  requireOk(fixture.run({"certutil", "-N", "-d", db, "--empty-password"}), "certutil -N");
  requireOk(fixture.run({"modutil", "-dbdir", db, "-add", "dojang", "-libfile", fixture.module, "-force"}),
            "modutil -add");

  const auto modules = fixture.run({"modutil", "-dbdir", db, "-list", "-force"});
  requireOk(modules, "modutil -list");
  CHECK(contains(modules.out, fixture.module));
  CHECK(contains(modules.out, kTokenLabel));

  const auto certificates = fixture.run({"certutil", "-d", db, "-L", "-h", "all"});
  requireOk(certificates, "certutil -L");
  INFO(certificates.out);
  CHECK(contains(certificates.out, std::string(kTokenLabel) + ":rsa"));
  CHECK(contains(certificates.out, std::string(kTokenLabel) + ":ec"));

  const auto pinFile = fixture.file("pin.txt");
  writeFile(pinFile, std::string(kPin) + "\n");
  const auto keys = fixture.run({"certutil", "-d", db, "-K", "-h", "all", "-f", pinFile});
  requireOk(keys, "certutil -K");
  INFO(keys.out << keys.err);
  CHECK(contains(keys.out + keys.err, std::string("Checking token \"") + kTokenLabel + "\""));
  CHECK(contains(keys.out, "rsa      01"));
  CHECK(contains(keys.out, "ec       02"));
  CHECK(contains(fixture.daemon.log(), "(certutil) logged in"));

  CHECK(fixture.daemon.stop() == 0);
}

TEST_CASE("ssh-keygen -D prints the token's public keys", "[integration][clients][ssh]") {
  Fixture fixture;
  fixture.generateKeys();
  const auto result = fixture.run({"ssh-keygen", "-D", fixture.module});
  requireOk(result, "ssh-keygen -D");
  INFO(result.out);
  CHECK(contains(result.out, "ssh-rsa AAAA"));
  CHECK(contains(result.out, "ecdsa-sha2-nistp256 AAAA"));

  // The same keys as the token's public key objects, converted in software.
  for (const auto& [id, name] : std::vector<std::pair<std::string, std::string>>{{kRsaId, "rsa"}, {kEcId, "ec"}}) {
    const auto pem = fixture.readPublicKey(id, name);
    const auto converted = runCommand({"ssh-keygen", "-i", "-m", "PKCS8", "-f", pem});
    requireOk(converted, "ssh-keygen -i " + pem);
    const auto blob = converted.out.substr(0, converted.out.find_last_not_of("\n") + 1);
    CHECK(contains(result.out, blob));
  }
  CHECK(fixture.daemon.stop() == 0);
}

TEST_CASE("OpenSSL signs and self-certifies through libp11's engine and dojang", "[integration][clients][libp11]") {
  Fixture fixture;
  fixture.generateKeys();
  const auto ecPublic = fixture.readPublicKey(kEcId, "ec");
  const auto rsaPublic = fixture.readPublicKey(kRsaId, "rsa");

  // libp11 0.4.12 takes the module from MODULE_PATH in the engine's config section (and from
  // $PKCS11_MODULE_PATH); the config file names it explicitly so nothing falls back to p11-kit.
  const auto conf = fixture.file("openssl.cnf");
  writeFile(conf, dojang::test::pkcs11EngineConfig(fixture.module));
  const auto openssl = [&](std::vector<std::string> args) {
    args.insert(args.begin(), "openssl");
    CommandOptions options;
    options.env = fixture.clientEnv();
    options.env["OPENSSL_CONF"] = conf;
    options.env["PKCS11_MODULE_PATH"] = fixture.module;
    return runCommand(args, options);
  };
  const auto uri = [](const std::string& object) {
    return std::string("pkcs11:token=") + kTokenLabel + ";object=" + object + ";type=private;pin-value=" + kPin;
  };

  const auto data = fixture.file("data.txt");
  writeFile(data, "dojang signs this through libp11\n");

  {  // openssl dgst -sign with the EC key verifies in software
    const auto signature = fixture.file("engine-ec.sig");
    if (checkOk(openssl({"dgst", "-sha256", "-engine", "pkcs11", "-keyform", "engine", "-sign", uri("ec"), "-out",
                         signature, data}),
                "openssl dgst -sign (engine, EC)")) {
      checkOk(runCommand({"openssl", "dgst", "-sha256", "-verify", ecPublic, "-signature", signature, data}),
              "openssl verifies the engine's ECDSA signature");
    }
  }

  {  // openssl dgst -sign with the RSA key verifies in software
    const auto signature = fixture.file("engine-rsa.sig");
    if (checkOk(openssl({"dgst", "-sha256", "-engine", "pkcs11", "-keyform", "engine", "-sign", uri("rsa"), "-out",
                         signature, data}),
                "openssl dgst -sign (engine, RSA)")) {
      checkOk(runCommand({"openssl", "dgst", "-sha256", "-verify", rsaPublic, "-signature", signature, data}),
              "openssl verifies the engine's RSA signature");
    }
  }

  {  // openssl req -x509 makes a self-signed certificate for the token's RSA key
    const auto certificate = fixture.file("self.pem");
    if (checkOk(openssl({"req", "-new", "-x509", "-engine", "pkcs11", "-keyform", "engine", "-key", uri("rsa"),
                         "-subj", "/CN=dojang self-signed", "-days", "2", "-out", certificate}),
                "openssl req -x509 (engine)")) {
      checkOk(runCommand({"openssl", "verify", "-CAfile", certificate, certificate}),
              "the self-signed certificate verifies");
      const auto certificateKey = runCommand({"openssl", "x509", "-in", certificate, "-noout", "-pubkey"});
      checkOk(certificateKey, "openssl x509 -pubkey");
      CHECK(certificateKey.out == readFile(rsaPublic));
    }
  }

  CHECK(contains(fixture.daemon.log(), "(openssl) logged in"));
  CHECK(fixture.daemon.stop() == 0);
}
