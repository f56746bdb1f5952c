// TLS client authentication with the key on a dojang token, by the real clients: curl and
// `openssl s_client` through libp11's engine against nginx, and NSS tstclnt against NSS selfserv
// (TLS 1.3 with RSA-PSS and ECDSA, TLS 1.2 with RSA PKCS#1 v1.5). The servers require a client
// certificate from the test CA; success is the server naming the token certificate's subject.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "tests/integration/real_clients_fixture.h"
#include "tests/support/openssl_engine.h"
#include "tests/support/tls_peers.h"

namespace {

using dojang::test::contains;
using dojang::test::describe;
using dojang::test::NginxProcess;
using dojang::test::readFile;
using dojang::test::RealClientsFixture;
using dojang::test::SelfservProcess;
using dojang::test::TokenKey;
using dojang::test::writeFile;

// libp11 0.4.12 takes the module from MODULE_PATH in its engine section (and $PKCS11_MODULE_PATH);
// naming it here keeps it from falling back to p11-kit's proxy.
std::map<std::string, std::string> engineEnv(RealClientsFixture& fixture) {
  const auto conf = fixture.file("openssl-engine.cnf");
  writeFile(conf, dojang::test::pkcs11EngineConfig(fixture.module()));
  return {{"OPENSSL_CONF", conf.string()}, {"PKCS11_MODULE_PATH", fixture.module()}};
}

std::vector<TokenKey> bothKeys() {
  return {RealClientsFixture::rsaKey(), RealClientsFixture::ecKey()};
}

}  // namespace

TEST_CASE("curl authenticates to nginx with the token key through libp11's engine",
          "[integration][tls][curl]") {
  RealClientsFixture fixture;
  NginxProcess nginx(fixture.file("nginx"), fixture.ca());
  const auto env = engineEnv(fixture);

  for (const auto& key : bothKeys()) {
    const auto result =
        fixture.run({"curl", "--silent", "--show-error", "--max-time", "20", "--cacert",
                     fixture.ca().certificate().string(), "--engine", "pkcs11", "--key-type", "ENG", "--key",
                     fixture.privateKeyUri(key), "--cert", fixture.certificatePem(key).string(), nginx.url()},
                    env);
    INFO(key.label << ": " << describe(result) << "\n"
                   << nginx.logs() << "\ndojangd:\n"
                   << fixture.daemon().log());
    CHECK(result.exitCode == 0);
    CHECK(contains(result.out, "CN=" + key.commonName));
  }
  CHECK(contains(readFile(nginx.accessLog()), "verify=SUCCESS"));
  // No PIN was given to curl: dojangd asked, once per curl, naming it.
  const auto prompts = fixture.pinentry().prompts();
  REQUIRE(prompts.size() == 2);
  CHECK(contains(prompts[0], "curl (pid "));
  CHECK(contains(prompts[0], "wants to sign as dojang tls"));
}

TEST_CASE("openssl s_client authenticates to nginx with the token key", "[integration][tls][s_client]") {
  RealClientsFixture fixture;
  NginxProcess nginx(fixture.file("nginx"), fixture.ca(), {"TLSv1.2 TLSv1.3"});
  const auto env = engineEnv(fixture);

  struct Case {
    TokenKey key;
    std::string tlsVersion;
  };
  // RSA in TLS 1.3 signs with PSS, in TLS 1.2 (OpenSSL's preference) with PSS too; ECDSA in both.
  for (const auto& [key, version] : std::vector<Case>{{RealClientsFixture::rsaKey(), "-tls1_3"},
                                                      {RealClientsFixture::rsaKey(), "-tls1_2"},
                                                      {RealClientsFixture::ecKey(), "-tls1_3"},
                                                      {RealClientsFixture::ecKey(), "-tls1_2"}}) {
    const auto result =
        fixture.run({"openssl", "s_client", "-connect", "127.0.0.1:" + std::to_string(nginx.port()), version,
                     "-CAfile", fixture.ca().certificate().string(), "-verify_return_error", "-engine",
                     "pkcs11", "-keyform", "engine", "-key", fixture.privateKeyUri(key), "-cert",
                     fixture.certificatePem(key).string(), "-ign_eof", "-quiet"},
                    env, std::chrono::seconds(30), "GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    INFO(key.label << " " << version << ": " << describe(result) << "\n" << nginx.logs());
    CHECK(result.exitCode == 0);
    CHECK(contains(result.out, "HTTP/1.1 200 OK"));
    CHECK(contains(result.out, "CN=" + key.commonName));
  }
}

namespace {

struct TstclntCase {
  std::string name;
  TokenKey key;
  std::string versions;
  std::string signatureSchemes;  // offered by the client, so also what it may sign with
};

}  // namespace

TEST_CASE("NSS tstclnt authenticates to selfserv with the token key", "[integration][tls][nss]") {
  RealClientsFixture fixture;
  SelfservProcess selfserv(fixture.file("selfserv"), fixture.ca());
  const auto db = fixture.makeNssDb(fixture.file("client-nssdb"));

  // The server's key is ECDSA P-256, so every list keeps ecdsa_secp256r1_sha256 for the server's
  // own signature; what is left for an RSA client key decides PSS or PKCS#1 v1.5.
  const std::vector<TstclntCase> cases = {
      {"TLS 1.3, RSA-PSS", RealClientsFixture::rsaKey(), "tls1.3:tls1.3",
       "ecdsa_secp256r1_sha256,rsa_pss_rsae_sha256"},
      {"TLS 1.3, ECDSA", RealClientsFixture::ecKey(), "tls1.3:tls1.3", "ecdsa_secp256r1_sha256"},
      {"TLS 1.2, RSA PKCS#1 v1.5", RealClientsFixture::rsaKey(), "tls1.2:tls1.2",
       "ecdsa_secp256r1_sha256,rsa_pkcs1_sha256"},
  };
  // The request comes from a file: tstclnt spins on a closed stdin after the server hangs up.
  const auto request = fixture.file("request.txt");
  writeFile(request, "GET / HTTP/1.0\r\n\r\n");
  for (const auto& testCase : cases) {
    const auto before = selfserv.output().size();
    auto argv = selfserv.clientPrefix();
    argv.insert(argv.end(),
                {"tstclnt", "-h", "127.0.0.1", "-p", std::to_string(SelfservProcess::kPort), "-d", db, "-n",
                 std::string(RealClientsFixture::kTokenLabel) + ":" + testCase.key.label, "-V",
                 testCase.versions, "-J", testCase.signatureSchemes, "-A", request.string()});
    const auto pinArgs = fixture.pin().nssPasswordArgs();
    argv.insert(argv.end(), pinArgs.begin(), pinArgs.end());
    const auto result = fixture.run(argv);
    const auto served = selfserv.output().substr(before);
    INFO(testCase.name << ": " << describe(result) << "\nselfserv:\n"
                       << served << "\ndojangd:\n"
                       << fixture.daemon().log());
    CHECK(result.exitCode == 0);
    CHECK(contains(result.out, "HTTP/1.0 200 OK"));
    // selfserv -v prints the subject of the client certificate it verified.
    CHECK(contains(served, "CN=" + testCase.key.commonName));
  }
  CHECK(selfserv.running());
  const auto prompts = fixture.pinentry().prompts();
  REQUIRE_FALSE(prompts.empty());
  CHECK(contains(prompts.back(), "tstclnt (pid "));
}
