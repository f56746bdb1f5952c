// dojang-ca: a CMP certificate authority with Korean certificate profiles, for tests, demos and
// development of dojang's renewal flow. See docs/ca.md.
#include <openssl/pem.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <span>
#include <thread>

#include "src/ca/cmp_server/cmp_service.h"
#include "src/ca/http/http_frontend.h"
#include "src/ca/issuer/authority.h"
#include "src/ca/issuer/subject_name.h"
#include "src/ca/profiles/profile.h"
#include "src/ca/store/ca_store.h"
#include "src/common/errors/foreign_errors.h"

namespace dojang::ca {
namespace {

constexpr int64_t kSecondsPerDay = 86400;

// Where the profiles come from, first match wins: --profiles, the CA directory's copy (written by
// init, edit it there), the installed file, the source tree (running from a build directory).
std::string resolveProfilesPath(const std::string& flag, const std::string& directory) {
  if (!flag.empty()) {
    return flag;
  }
  for (const std::string& candidate :
       {directory.empty() ? std::string() : directory + "/profiles.toml", std::string(DOJANG_CA_INSTALLED_PROFILES),
        std::string(DOJANG_CA_SOURCE_PROFILES)}) {
    if (!candidate.empty() && std::filesystem::exists(candidate)) {
      return candidate;
    }
  }
  return DOJANG_CA_INSTALLED_PROFILES;
}

// Uniform random characters from an alphabet (rejection sampling, no modulo bias).
std::string randomString(const std::string& alphabet, size_t length) {
  std::string result;
  while (result.size() < length) {
    unsigned char byte = 0;
    opensslRandomBytes(std::span(&byte, 1), "RAND_bytes");
    const size_t limit = 256 - (256 % alphabet.size());
    if (byte < limit) {
      result += alphabet[byte % alphabet.size()];
    }
  }
  return result;
}

std::string statusOf(const CertificateRecord& record, int64_t now) {
  if (record.revokedAt) {
    return "revoked";
  }
  return now >= record.notAfter ? "expired" : "valid";
}

int runInit(const std::string& directory, const std::string& keyType, const std::string& name) {
  const CaPaths paths(directory);
  CertificateAuthority::initialise(paths, keyType == "rsa" ? KeyType::Rsa2048 : KeyType::EcP256, name);
  const std::string profilesCopy = directory + "/profiles.toml";
  const std::string source = resolveProfilesPath("", "");
  if (!std::filesystem::exists(profilesCopy) && std::filesystem::exists(source)) {
    std::filesystem::copy_file(source, profilesCopy);
  }
  std::cout << "CA created in " << directory << "\n"
            << "  CA certificate:          " << paths.caCert << "\n"
            << "  CMP signing certificate: " << paths.cmpCert << "\n"
            << "  profiles (editable):     " << profilesCopy << "\n"
            << "  state:                   " << paths.database << "\n";
  return 0;
}

// SIGINT/SIGTERM are blocked in every thread and taken by one watcher thread with sigwait, which
// stops the HTTP server: no work inside a signal handler.
int runServe(const std::string& directory, const std::string& bindAddress, int port, const std::string& profilesFlag,
             const std::string& publicUrl, std::optional<int> renewalWindowDays, std::optional<int> testValidityDays,
             int testNotBeforeOffsetDays) {
  sigset_t stopSignals;
  sigemptyset(&stopSignals);
  sigaddset(&stopSignals, SIGINT);
  sigaddset(&stopSignals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stopSignals, nullptr);

  const CaPaths paths(directory);
  const CertificateAuthority authority = CertificateAuthority::load(paths);
  CaStore store(paths.database);
  ProfileCatalog profiles = loadProfiles(resolveProfilesPath(profilesFlag, directory));

  ServicePolicy policy;
  policy.renewalWindowDays = renewalWindowDays.value_or(profiles.renewalWindowDays);
  policy.testValidityDays = testValidityDays;
  policy.testNotBeforeOffsetDays = testNotBeforeOffsetDays;

  // The CRL distribution point names the bound port, known only after bind (--port 0).
  auto service = std::make_unique<CmpService>(authority, store, profiles, policy);
  HttpFrontend http(*service);
  const int boundPort = http.bind(bindAddress, port);
  const std::string baseUrl = publicUrl.empty() ? "http://" + bindAddress + ":" + std::to_string(boundPort) : publicUrl;
  policy.crlUrl = baseUrl + kCrlPath;
  service->setCrlUrl(policy.crlUrl);

  std::thread watcher([&]() {
    int received = 0;
    sigwait(&stopSignals, &received);
    http.stop();
  });
  std::cout << "dojang-ca listening on http://" << bindAddress << ":" << boundPort << "/ (CMP: POST "
            << kCmpContentType << ", CRL: " << policy.crlUrl << ")" << std::endl;
  http.run();
  // Wake the watcher if the server stopped on its own.
  pthread_kill(watcher.native_handle(), SIGTERM);
  watcher.join();
  std::cout << "dojang-ca stopped" << std::endl;
  return 0;
}

int runEnrollCode(const std::string& directory, const std::string& profilesFlag, const std::string& profileId,
                  const std::string& subjectText, bool reissue, std::optional<int> lifetimeDays, bool json) {
  const CaPaths paths(directory);
  (void)CertificateAuthority::load(paths);  // fails early with a clear message when there is no CA
  const ProfileCatalog profiles = loadProfiles(resolveProfilesPath(profilesFlag, directory));
  const Profile& profile = profiles.require(profileId);
  X509NamePtr subject = parseSubject(subjectText, profile.brand);
  CaStore store(paths.database);
  const int64_t now = std::time(nullptr);

  EnrolmentCode code;
  code.profile = profile.id;
  code.subject = dojang::ca::subjectText(*subject);
  code.subjectDer = subjectDer(*subject);
  code.createdAt = now;
  code.expiresAt = now + int64_t{lifetimeDays.value_or(profiles.codeLifetimeDays)} * kSecondsPerDay;
  code.secret = randomString("ABCDEFGHJKLMNPQRSTUVWXYZ23456789", 16);
  if (reissue) {
    std::optional<CertificateRecord> current = store.findCurrent(code.subjectDer, profile.id);
    if (!current) {
      current = store.findLatest(code.subjectDer, profile.id);
    }
    if (!current) {
      throw Error(CKR_ARGUMENTS_BAD, ErrorKind::BadInput,
                  "no " + profile.id + " certificate for " + code.subject + " to reissue; use enroll-code without --reissue");
    }
    if (now >= current->notAfter) {
      throw Error(CKR_ARGUMENTS_BAD, ErrorKind::BadInput,
                  "certificate " + current->serial + " expired on " + formatTime(current->notAfter) +
                      "; a reissue keeps the old expiry, so issue a new certificate instead (no --reissue)");
    }
    code.reissueOf = current->serial;
  }
  for (int attempt = 0;; ++attempt) {
    code.reference = randomString("0123456789", 10);
    if (!store.findCode(code.reference)) {
      break;
    }
    if (attempt > 16) {
      throw Error(CKR_FUNCTION_FAILED, ErrorKind::Fatal, "cannot find a free reference number");
    }
  }
  store.insertCode(code);

  const long long fee = reissue ? 0 : profile.feeKrw;
  if (json) {
    nlohmann::json out = {{"reference", code.reference},
                          {"authorization_code", code.secret},
                          {"profile", profile.id},
                          {"brand", profile.brand},
                          {"type", profile.type},
                          {"subject", code.subject},
                          {"expires_at", code.expiresAt},
                          {"fee_krw", fee},
                          {"fee_acknowledgement_oid", kFeeAcknowledgementOid},
                          {"reissue_of", code.reissueOf ? nlohmann::json(*code.reissueOf) : nlohmann::json(nullptr)}};
    std::cout << out.dump(2) << std::endl;
    return 0;
  }
  std::cout << "참조번호 (reference number):    " << code.reference << "\n"
            << "인가코드 (authorization code): " << code.secret << "\n"
            << "profile: " << profile.id << " (" << profile.brand << " " << profile.type << ")\n"
            << "subject: " << code.subject << "\n"
            << "expires: " << formatTime(code.expiresAt) << "\n";
  if (code.reissueOf) {
    std::cout << "reissue of certificate " << *code.reissueOf << ": enrolling revokes it and keeps its expiry; free\n";
  } else if (fee > 0) {
    std::cout << "fee: " << formatKrw(fee) << "; acknowledge it with: -geninfo " << kFeeAcknowledgementOid << ":int:" << fee
              << "\n";
  } else {
    std::cout << "fee: free\n";
  }
  if (profile.support) {
    std::cout << "support: " << profile.operatorName << " " << profile.support->phone << " (" << profile.support->hours
              << "; walk-in " << profile.support->walkIn << ")\n";
  }
  return 0;
}

int runList(const std::string& directory, bool json) {
  CaStore store(CaPaths(directory).database);
  const int64_t now = std::time(nullptr);
  const std::vector<CertificateRecord> records = store.listCertificates();
  if (json) {
    nlohmann::json out = nlohmann::json::array();
    for (const CertificateRecord& record : records) {
      out.push_back({{"serial", record.serial},
                     {"subject", record.subject},
                     {"profile", record.profile},
                     {"not_before", record.notBefore},
                     {"not_after", record.notAfter},
                     {"issued_at", record.issuedAt},
                     {"origin", record.origin},
                     {"replaces", record.replaces ? nlohmann::json(*record.replaces) : nlohmann::json(nullptr)},
                     {"status", statusOf(record, now)},
                     {"revoked_at", record.revokedAt ? nlohmann::json(*record.revokedAt) : nlohmann::json(nullptr)}});
    }
    std::cout << out.dump(2) << std::endl;
    return 0;
  }
  for (const CertificateRecord& record : records) {
    std::cout << record.serial << "  " << statusOf(record, now) << "  " << record.profile << "  "
              << formatDate(record.notBefore) << " .. " << formatDate(record.notAfter) << "  " << record.origin << "  "
              << record.subject << "\n";
  }
  std::cout << records.size() << " certificate(s)" << std::endl;
  return 0;
}

int runLedger(const std::string& directory, bool json) {
  CaStore store(CaPaths(directory).database);
  const std::vector<LedgerEntry> entries = store.ledger();
  if (json) {
    nlohmann::json out = nlohmann::json::array();
    for (const LedgerEntry& entry : entries) {
      out.push_back({{"id", entry.id},
                     {"at", entry.at},
                     {"serial", entry.serial},
                     {"profile", entry.profile},
                     {"amount_krw", entry.amountKrw},
                     {"kind", entry.kind}});
    }
    std::cout << out.dump(2) << std::endl;
    return 0;
  }
  long long total = 0;
  for (const LedgerEntry& entry : entries) {
    total += entry.amountKrw;
    std::cout << formatTime(entry.at) << "  " << formatKrw(entry.amountKrw) << "  " << entry.kind << "  "
              << entry.profile << "  " << entry.serial << "\n";
  }
  std::cout << entries.size() << " charge(s), total " << formatKrw(total) << std::endl;
  return 0;
}

int runRevoke(const std::string& directory, std::string serial, int reason) {
  for (char& c : serial) {
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  serial.erase(0, std::min(serial.find_first_not_of('0'), serial.size() - 1));  // BN_bn2hex has no leading zeros
  CaStore store(CaPaths(directory).database);
  std::optional<CertificateRecord> record = store.findBySerial(serial);
  if (!record) {
    throw Error(CKR_ARGUMENTS_BAD, ErrorKind::BadInput, "no certificate with serial " + serial);
  }
  if (!store.revoke(serial, std::time(nullptr), reason)) {
    throw Error(CKR_ARGUMENTS_BAD, ErrorKind::BadInput,
                "certificate " + serial + " was already revoked on " + formatTime(record->revokedAt.value_or(0)));
  }
  std::cout << "revoked " << serial << " (" << record->subject << ")" << std::endl;
  return 0;
}

int runCrl(const std::string& directory, const std::string& outPath, bool pem) {
  const CaPaths paths(directory);
  const CertificateAuthority authority = CertificateAuthority::load(paths);
  CaStore store(paths.database);
  X509CrlPtr crl = authority.makeCrl(store.revoked(), store.nextCrlNumber(), std::time(nullptr));
  BioPtr out(checkOpenssl(BIO_new_file(outPath.c_str(), "wb"), ("creating " + outPath).c_str()));
  checkOpensslStatus(pem ? PEM_write_bio_X509_CRL(out.get(), crl.get()) : i2d_X509_CRL_bio(out.get(), crl.get()),
                     "writing the CRL");
  std::cout << "CRL with " << store.revoked().size() << " revoked certificate(s) written to " << outPath << std::endl;
  return 0;
}

int runProfiles(const std::string& directory, const std::string& profilesFlag, bool json) {
  const std::string path = resolveProfilesPath(profilesFlag, directory);
  const ProfileCatalog catalog = loadProfiles(path);
  if (json) {
    nlohmann::json out = nlohmann::json::array();
    for (const Profile& profile : catalog.profiles) {
      out.push_back({{"id", profile.id},
                     {"brand", profile.brand},
                     {"operator", profile.operatorName},
                     {"type", profile.type},
                     {"policy_oid", profile.policyOid},
                     {"validity_days", profile.validityDays},
                     {"fee_krw", profile.feeKrw}});
    }
    std::cout << out.dump(2) << std::endl;
    return 0;
  }
  std::cout << "profiles from " << path << " (renewal window " << catalog.renewalWindowDays << " days)\n";
  for (const Profile& profile : catalog.profiles) {
    std::cout << profile.id << "  " << profile.brand << " " << profile.type << "  " << profile.policyOid << "  "
              << profile.validityDays << " days  " << formatFee(profile.feeKrw) << "\n";
  }
  return 0;
}

}  // namespace
}  // namespace dojang::ca

int main(int argc, char** argv) {
  // Keys, the database (with authorization codes) and its WAL files are private to the CA's user;
  // certificates are made readable explicitly.
  umask(077);
  CLI::App app{"dojang-ca: a CMP certificate authority with Korean certificate profiles (see docs/ca.md)"};
  app.require_subcommand(1);
  std::string directory;
  std::string profilesFlag;
  bool json = false;

  auto* init = app.add_subcommand("init", "create a CA: key, self-signed certificate, CMP signing certificate");
  std::string keyType = "ec";
  std::string caName = "dojang Test Root CA";
  init->add_option("--dir", directory, "CA directory")->required();
  init->add_option("--key-type", keyType, "ec (P-256) or rsa (2048)")->check(CLI::IsMember({"ec", "rsa"}));
  init->add_option("--name", caName, "CA common name");

  auto* serve = app.add_subcommand("serve", "serve CMP over HTTP and the CRL");
  std::string bindAddress = "127.0.0.1";
  int port = 8829;
  std::string publicUrl;
  std::optional<int> renewalWindowDays;
  std::optional<int> testValidityDays;
  int testNotBeforeOffsetDays = 0;
  serve->add_option("--dir", directory, "CA directory")->required();
  serve->add_option("--port", port, "TCP port; 0 picks a free one (printed on stdout)")->check(CLI::Range(0, 65535));
  serve->add_option("--bind", bindAddress, "listen address (loopback by default)");
  serve->add_option("--profiles", profilesFlag, "profiles TOML file");
  serve->add_option("--public-url", publicUrl, "base URL written into CRL distribution points");
  serve->add_option("--renewal-window-days", renewalWindowDays, "accept kur this many days before expiry")
      ->check(CLI::Range(0, 3650));
  serve->add_option("--test-validity-days", testValidityDays, "TESTS ONLY: issue certificates valid this many days")
      ->check(CLI::Range(1, 3650));
  serve->add_option("--test-not-before-offset-days", testNotBeforeOffsetDays,
                    "TESTS ONLY: backdate notBefore (and so notAfter) by this many days")
      ->check(CLI::Range(0, 3650));

  auto* enrollCode = app.add_subcommand("enroll-code", "make a reference number (참조번호) and authorization code (인가코드)");
  std::string profileId;
  std::string subject;
  bool reissue = false;
  std::optional<int> lifetimeDays;
  enrollCode->add_option("--dir", directory, "CA directory")->required();
  enrollCode->add_option("--profile", profileId, "profile id (see `dojang-ca profiles`)")->required();
  enrollCode->add_option("--subject", subject, "subject, e.g. \"cn=홍길동()0001234567890123,ou=개인,o=SignKorea,c=KR\"")
      ->required();
  enrollCode->add_flag("--reissue", reissue, "재발급: revoke the subject's current certificate on enrolment, keep its expiry");
  enrollCode->add_option("--expires-days", lifetimeDays, "code lifetime in days")->check(CLI::Range(1, 3650));
  enrollCode->add_option("--profiles", profilesFlag, "profiles TOML file");
  enrollCode->add_flag("--json", json, "JSON output");

  auto* list = app.add_subcommand("list", "list issued certificates");
  list->add_option("--dir", directory, "CA directory")->required();
  list->add_flag("--json", json, "JSON output");

  auto* revoke = app.add_subcommand("revoke", "revoke a certificate");
  std::string serial;
  int reason = 0;
  revoke->add_option("--dir", directory, "CA directory")->required();
  revoke->add_option("--serial", serial, "serial number, hex")->required();
  revoke->add_option("--reason", reason, "CRLReason code (0 unspecified, 1 keyCompromise, 4 superseded, ...)")
      ->check(CLI::Range(0, 10));

  auto* crl = app.add_subcommand("crl", "write a CRL");
  std::string outPath;
  bool pem = false;
  crl->add_option("--dir", directory, "CA directory")->required();
  crl->add_option("--out", outPath, "output file")->required();
  crl->add_flag("--pem", pem, "PEM instead of DER");

  auto* ledger = app.add_subcommand("ledger", "list fee charges");
  ledger->add_option("--dir", directory, "CA directory")->required();
  ledger->add_flag("--json", json, "JSON output");

  auto* profiles = app.add_subcommand("profiles", "list certificate profiles");
  profiles->add_option("--dir", directory, "CA directory (uses its profiles.toml)");
  profiles->add_option("--profiles", profilesFlag, "profiles TOML file");
  profiles->add_flag("--json", json, "JSON output");

  CLI11_PARSE(app, argc, argv);

  try {
    if (init->parsed()) {
      return dojang::ca::runInit(directory, keyType, caName);
    }
    if (serve->parsed()) {
      return dojang::ca::runServe(directory, bindAddress, port, profilesFlag, publicUrl, renewalWindowDays,
                                  testValidityDays, testNotBeforeOffsetDays);
    }
    if (enrollCode->parsed()) {
      return dojang::ca::runEnrollCode(directory, profilesFlag, profileId, subject, reissue, lifetimeDays, json);
    }
    if (list->parsed()) {
      return dojang::ca::runList(directory, json);
    }
    if (revoke->parsed()) {
      return dojang::ca::runRevoke(directory, serial, reason);
    }
    if (crl->parsed()) {
      return dojang::ca::runCrl(directory, outPath, pem);
    }
    if (ledger->parsed()) {
      return dojang::ca::runLedger(directory, json);
    }
    if (profiles->parsed()) {
      return dojang::ca::runProfiles(directory, profilesFlag, json);
    }
  } catch (const std::exception& error) {
    std::cerr << "dojang-ca: " << error.what() << std::endl;
    return 1;
  }
  return 2;
}
