// The renewal tests' world: a fresh SoftHSM token behind a real dojangd, every token access through
// dojang-pkcs11.so, dojang-ca on 127.0.0.1 issuing 20-day certificates (inside the 30-day renewal
// window), the first certificate from `openssl cmp` through the token, and `dojang` run as a
// subprocess. Shared by renew_test.cc and renewal_faults_test.cc.
#pragma once

#include <cstddef>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/ca/ca_test_support.h"
#include "tests/support/dojangd_process.h"
#include "tests/support/run_command.h"
#include "tests/support/softhsm_token.h"
#include "tests/support/temp_dir.h"

namespace dojang::test {

// The label of the first pair and certificate on the token.
inline constexpr const char* kRenewalLabel = "signkey";

// $DOJANG_CLI, the installed build of dojang; throws std::runtime_error when it is not set.
std::string dojangCli();
void writeText(const std::filesystem::path& path, const std::string& text);
// How often `what` occurs in `text`.
std::size_t count(const std::string& text, const std::string& what);

// What the first certificate needs: ir through the token with `openssl cmp` (OpenSSL's pkcs11
// engine over dojang-pkcs11.so) for the pair labelled kRenewalLabel with CKA_ID 01, then stored on
// the token beside its key, as the demo does.
struct FirstCertificate {
  std::filesystem::path work;  // openssl.cnf and the certificate go here
  std::map<std::string, std::string> env;
  const SoftHsmToken& token;
  std::string caHostPort;
  std::filesystem::path caDir;
  std::string profile;
  long long feeKrw = 0;  // the fee acknowledged in the request; 0: none
};
void enrolFirstCertificate(const FirstCertificate& first);
// A reference number and authorization code from dojang-ca for `profile`, as JSON.
nlohmann::json enrolmentCodeFor(const std::filesystem::path& caDir, const std::string& profile);

// A token with one key pair and its first certificate, a CA, and the renewal configuration.
struct RenewalFixture {
  explicit RenewalFixture(const std::string& keyType,
                          const std::vector<std::string>& caArgs = {"--test-validity-days", "20"},
                          bool firstCertificate = true, const DojangdOptions& daemonOptions = {});

  CommandResult run(const std::vector<std::string>& argv, const std::string& input = {}) const;
  // A code for the CA's first issuance (reference number and authorization code), as JSON.
  nlohmann::json enrolmentCode() const;
  // The first certificate: ir through the token (OpenSSL's pkcs11 engine over dojang-pkcs11.so),
  // then stored on the token beside its key, as the demo does.
  void enrol();
  // `CLI renew --config ... --pin-stdin EXTRA...` with the PIN on stdin; `cli` defaults to $DOJANG_CLI.
  CommandResult renew(const std::vector<std::string>& extra, const std::string& pin,
                      const std::string& cli = {},
                      const std::map<std::string, std::string>& moreEnv = {}) const;
  // Every object on the token as pkcs11-tool lists it (after a login).
  std::string objects() const;

  SoftHsmToken token;
  DojangdProcess daemon;
  TempDir work;
  std::filesystem::path caDir;
  std::map<std::string, std::string> env;
  std::unique_ptr<ca::test::CaServer> server;
};

}  // namespace dojang::test
