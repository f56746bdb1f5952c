// The browsers sign in to nginx on 127.0.0.1 with the certificate on a dojang token: Debian's
// chromium truly headless (--dump-dom prints the page, which echoes the client certificate's
// subject) and firefox-esr headless (it cannot print the page, so nginx's access log, which records
// the same subject, is read instead). Headless, neither can ask for a PIN: the token is in
// dojangd's prompt mode, so the browser never logs in and dojangd asks the test pinentry, once,
// naming the browser.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "tests/integration/real_clients_fixture.h"
#include "tests/support/tls_peers.h"

namespace {

using dojang::test::contains;
using dojang::test::describe;
using dojang::test::NginxProcess;
using dojang::test::readFile;
using dojang::test::RealClientsFixture;
using dojang::test::writeFile;

// A browser that hangs anyway is killed with everything it started (timeout signals its group).
constexpr const char* kHardTimeout = "60";
std::vector<std::string> withHardTimeout(std::vector<std::string> argv) {
  argv.insert(argv.begin(), {"timeout", "-k", "5", kHardTimeout});
  return argv;
}

// A Chromium managed-policy file for this test, removed when the owner dies. Chromium reads
// every *.json in the directory; the name carries the pid so parallel runs do not collide.
class ChromiumPolicy final {
 public:
  static constexpr const char* kDirectory = "/etc/chromium/policies/managed";

  explicit ChromiumPolicy(const std::string& json)
      : m_path(std::filesystem::path(kDirectory) / ("dojang-test-" + std::to_string(::getpid()) + ".json")) {
    std::filesystem::create_directories(kDirectory);
    writeFile(m_path, json);
  }
  ~ChromiumPolicy() {
    std::error_code ignored;
    std::filesystem::remove(m_path, ignored);
  }
  ChromiumPolicy(const ChromiumPolicy&) = delete;
  ChromiumPolicy& operator=(const ChromiumPolicy&) = delete;

 private:
  std::filesystem::path m_path;
};

// Firefox preferences for a test profile: choose the client certificate without asking, and no
// traffic of its own (updates, telemetry, safe browsing, captive portal checks).
constexpr const char* kFirefoxUserJs = R"(user_pref("security.default_personal_cert", "Select Automatically");
user_pref("app.update.enabled", false);
user_pref("app.update.auto", false);
user_pref("browser.shell.checkDefaultBrowser", false);
user_pref("browser.startup.homepage_override.mstone", "ignore");
user_pref("browser.aboutwelcome.enabled", false);
user_pref("datareporting.policy.dataSubmissionEnabled", false);
user_pref("datareporting.healthreport.uploadEnabled", false);
user_pref("toolkit.telemetry.enabled", false);
user_pref("toolkit.telemetry.unified", false);
user_pref("browser.safebrowsing.malware.enabled", false);
user_pref("browser.safebrowsing.phishing.enabled", false);
user_pref("browser.safebrowsing.downloads.enabled", false);
user_pref("network.captive-portal-service.enabled", false);
user_pref("network.connectivity-service.enabled", false);
user_pref("extensions.update.enabled", false);
user_pref("extensions.getAddons.cache.enabled", false);
user_pref("browser.region.network.url", "");
user_pref("services.settings.server", "http://127.0.0.1:9/");
)";

}  // namespace

TEST_CASE("headless Chromium signs in to nginx with the token certificate",
          "[integration][browser][chromium]") {
  RealClientsFixture fixture;
  NginxProcess nginx(fixture.file("nginx"), fixture.ca());
  const auto& key = RealClientsFixture::ecKey();

  // Chromium on Linux keeps its client certificates and user trust in sql:$HOME/.pki/nssdb.
  const auto home = fixture.file("home");
  fixture.makeNssDb(home / ".pki" / "nssdb");
  const std::string origin = "https://127.0.0.1:" + std::to_string(nginx.port());
  const ChromiumPolicy policy(R"({"AutoSelectCertificateForUrls": ["{\"pattern\":\")" + origin +
                              R"(\",\"filter\":{\"SUBJECT\":{\"CN\":\")" + key.commonName + R"(\"}}}"]})");

  const auto result = fixture.run(
      withHardTimeout({"chromium", "--headless=new", "--no-sandbox", "--disable-gpu",
                       "--disable-background-networking", "--disable-component-update", "--disable-sync",
                       "--no-first-run", "--user-data-dir=" + fixture.file("chromium-profile").string(),
                       "--dump-dom", nginx.url()}),
      {{"HOME", home.string()}}, std::chrono::seconds(90));
  INFO(describe(result) << "\n" << nginx.logs() << "\ndojangd:\n" << fixture.daemon().log());
  CHECK(result.exitCode == 0);
  CHECK(contains(result.out, "CN=" + key.commonName));
  const auto prompts = fixture.pinentry().prompts();
  REQUIRE(prompts.size() == 1);
  CHECK(contains(prompts[0], "chromium (pid "));
  CHECK(contains(prompts[0], "wants to sign as " + key.commonName));
}

TEST_CASE("headless Firefox ESR signs in to nginx with the token certificate",
          "[integration][browser][firefox]") {
  RealClientsFixture fixture;
  NginxProcess nginx(fixture.file("nginx"), fixture.ca());
  const auto& key = RealClientsFixture::rsaKey();

  // A fresh profile, registered by `dojang setup-browser` as a user would; the test CA is trusted
  // for the server.
  const auto home = fixture.file("home");
  const auto profile = home / ".mozilla" / "firefox" / "test.default";
  std::filesystem::create_directories(profile);
  writeFile(home / ".mozilla" / "firefox" / "profiles.ini",
            "[General]\nStartWithLastProfile=1\n\n[Profile0]\nName=default\nIsRelative=1\nPath=test.default\n"
            "Default=1\n");
  const char* cli = std::getenv("DOJANG_CLI");
  REQUIRE(cli != nullptr);
  const auto setup = fixture.run({cli, "setup-browser", "--module", fixture.module()}, {{"HOME", home.string()}});
  INFO(describe(setup));
  REQUIRE(setup.exitCode == 0);
  CHECK(contains(setup.out, "added"));
  fixture.trustTestCa(profile);
  writeFile(profile / "user.js", kFirefoxUserJs);
  // --screenshot loads the page and exits; what the page said is in nginx's access log.
  const auto result =
      fixture.run(withHardTimeout({"firefox-esr", "--headless", "--no-remote", "--profile", profile.string(),
                                   "--screenshot", fixture.file("firefox.png").string(), nginx.url()}),
                  {{"HOME", home.string()}, {"MOZ_CRASHREPORTER_DISABLE", "1"}}, std::chrono::seconds(90));
  const auto access = readFile(nginx.accessLog());
  INFO(describe(result) << "\n" << nginx.logs() << "\ndojangd:\n" << fixture.daemon().log());
  CHECK(result.exitCode == 0);
  CHECK(contains(access, "GET / HTTP/1.1 200"));
  CHECK(contains(access, "CN=" + key.commonName));
  const auto prompts = fixture.pinentry().prompts();
  REQUIRE(prompts.size() == 1);
  CHECK(contains(prompts[0], "firefox-esr (pid "));
}
