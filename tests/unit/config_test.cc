// dojangd's configuration file: backends, defaults, and errors a user can act on.
#include <catch2/catch.hpp>
#include <filesystem>

#include "src/common/errors/error.h"
#include "src/daemon/config.h"
#include "tests/support/temp_dir.h"

namespace core = dojang::daemon;

namespace {

// The message of the dojang::Error that parseConfig throws; fails the test if it does not.
std::string errorOf(const std::string& text, const std::string& source = "dojangd.toml") {
  try {
    (void)core::parseConfig(text, source);
  } catch (const dojang::Error& error) {
    return error.what();
  }
  FAIL("no error for:\n" << text);
  return {};
}

bool openscInstalled() {
  for (const char* path : {"/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so", "/usr/lib/aarch64-linux-gnu/opensc-pkcs11.so",
                           "/usr/lib64/opensc-pkcs11.so", "/usr/lib/opensc-pkcs11.so"}) {
    if (std::filesystem::exists(path)) {
      return true;
    }
  }
  return false;
}

}  // namespace

TEST_CASE("backends are read in order, with names defaulting to the module's stem", "[config]") {
  const auto config = core::parseConfig(R"(
[daemon]
poll_interval_ms = 250

[[backend]]
name = "softhsm"
module = "/usr/lib/softhsm/libsofthsm2.so"

[[backend]]
module = "/opt/vendor/lib/vendor-pkcs11.so"
)",
                                        "test.toml");
  CHECK(config.source == "test.toml");
  CHECK(config.pollInterval == std::chrono::milliseconds(250));
  REQUIRE(config.backends.size() == 2);
  CHECK(config.backends[0].name == "softhsm");
  CHECK(config.backends[0].modulePath == "/usr/lib/softhsm/libsofthsm2.so");
  CHECK(config.backends[1].name == "vendor-pkcs11");
  CHECK(config.backends[1].modulePath == "/opt/vendor/lib/vendor-pkcs11.so");
}

TEST_CASE("an empty file means the defaults", "[config]") {
  const auto config = core::parseConfig("", "empty.toml");
  CHECK(config.pollInterval == std::chrono::milliseconds(1000));
  if (openscInstalled()) {
    REQUIRE(config.backends.size() == 1);
    CHECK(config.backends[0].name == "opensc");
  } else {
    CHECK(config.backends.empty());
  }

  SECTION("a [daemon] table alone keeps the default backends") {
    const auto onlyDaemon = core::parseConfig("[daemon]\npoll_interval_ms = 50\n", "d.toml");
    CHECK(onlyDaemon.pollInterval == std::chrono::milliseconds(50));
    CHECK(onlyDaemon.backends.size() == config.backends.size());
  }
  SECTION("configured backends replace the default") {
    const auto configured = core::parseConfig("[[backend]]\nmodule = \"/x/y.so\"\n", "b.toml");
    REQUIRE(configured.backends.size() == 1);
    CHECK(configured.backends[0].modulePath == "/x/y.so");
  }
}

TEST_CASE("bad TOML is an error naming the file and line", "[config]") {
  const auto message = errorOf("[daemon]\npoll_interval_ms = = 3\n", "/home/u/.config/dojang/dojangd.toml");
  CHECK_THAT(message, Catch::Contains("/home/u/.config/dojang/dojangd.toml:2"));

  CHECK_THAT(errorOf("[[backend]\nmodule = \"x\"\n", "f.toml"), Catch::Contains("f.toml:1"));
  CHECK_THAT(errorOf("[[backend]]\nmodule = \"unterminated\n", "f.toml"), Catch::Contains("f.toml:2"));
}

TEST_CASE("a backend without a module is an error naming the backend", "[config]") {
  CHECK_THAT(errorOf("[[backend]]\nmodule = \"/a.so\"\n[[backend]]\nname = \"second\"\n", "f.toml"),
             Catch::Contains("f.toml") && Catch::Contains("backend #2") && Catch::Contains("module"));
  CHECK_THAT(errorOf("[[backend]]\nmodule = \"\"\n", "f.toml"), Catch::Contains("backend #1"));
  CHECK_THAT(errorOf("[[backend]]\nmodule = 17\n", "f.toml"), Catch::Contains("backend #1"));
  CHECK_THAT(errorOf("backend = [\"not a table\"]\n", "f.toml"), Catch::Contains("backend #1"));
}

TEST_CASE("the poll interval must be sensible", "[config]") {
  CHECK_THAT(errorOf("[daemon]\npoll_interval_ms = 10\n"), Catch::Contains("poll_interval_ms"));
  CHECK_THAT(errorOf("[daemon]\npoll_interval_ms = 600001\n"), Catch::Contains("poll_interval_ms"));
  CHECK_THAT(errorOf("[daemon]\npoll_interval_ms = -5\n"), Catch::Contains("poll_interval_ms"));
  CHECK(core::parseConfig("[daemon]\npoll_interval_ms = 600000\n", "f").pollInterval ==
        std::chrono::milliseconds(600000));
}

TEST_CASE("connection limits have defaults and can be set in [daemon]", "[config][limits]") {
  const auto defaults = core::parseConfig("", "empty.toml");
  CHECK(defaults.connections.maxConnections == 256);
  CHECK(defaults.connections.maxConnectionsPerProcess == 64);
  CHECK(defaults.connections.helloTimeout == std::chrono::milliseconds(5000));

  const auto set = core::parseConfig(
      "[daemon]\nmax_connections = 20\nmax_connections_per_process = 5\nhello_timeout_ms = 300\n", "f");
  CHECK(set.connections.maxConnections == 20);
  CHECK(set.connections.maxConnectionsPerProcess == 5);
  CHECK(set.connections.helloTimeout == std::chrono::milliseconds(300));

  CHECK_THAT(errorOf("[daemon]\nmax_connections = 0\n"), Catch::Contains("max_connections"));
  CHECK_THAT(errorOf("[daemon]\nmax_connections = 100001\n"), Catch::Contains("max_connections"));
  CHECK_THAT(errorOf("[daemon]\nmax_connections_per_process = 0\n"), Catch::Contains("max_connections_per_process"));
  CHECK_THAT(errorOf("[daemon]\nhello_timeout_ms = 10\n"), Catch::Contains("hello_timeout_ms"));
  CHECK_THAT(errorOf("[daemon]\nhello_timeout_ms = 600001\n"), Catch::Contains("hello_timeout_ms"));
}

TEST_CASE("loadConfig reads files and refuses a missing one it was told to read", "[config]") {
  dojang::test::TempDir dir("dojang-config-test-");
  const auto file = dir / "dojangd.toml";
  dojang::test::writeFile(file, "[[backend]]\nname = \"one\"\nmodule = \"/m.so\"\n");
  const auto config = core::loadConfig(file.string());
  CHECK(config.source == file.string());
  REQUIRE(config.backends.size() == 1);
  CHECK(config.backends[0].name == "one");

  try {
    (void)core::loadConfig((dir / "missing.toml").string());
    FAIL("a missing --config file must be an error");
  } catch (const dojang::Error& error) {
    CHECK_THAT(std::string(error.what()), Catch::Contains("missing.toml"));
  }

  dojang::test::writeFile(file, "this is not toml\n");
  try {
    (void)core::loadConfig(file.string());
    FAIL("an unparsable file must be an error");
  } catch (const dojang::Error& error) {
    CHECK_THAT(std::string(error.what()), Catch::Contains(file.string() + ":1"));
  }
}

TEST_CASE("[renewal] has defaults: every 4 hours, notices at 30, 7, 3 and 1 days, nothing automatic",
          "[config][renewal]") {
  const auto config = core::parseConfig("", "dojangd.toml");
  CHECK(config.renewal.checkInterval == std::chrono::hours(4));
  CHECK(config.renewal.notifyDays == std::vector<int>{30, 7, 3, 1});
  CHECK(!config.renewal.pinFile);
  CHECK(!config.renewal.dojangCli);
  CHECK(config.renewal.automatic.empty());
}

TEST_CASE("[renewal] and [[renewal.auto]] are read", "[config][renewal]") {
  const auto config = core::parseConfig(
      "[renewal]\n"
      "check_interval_seconds = 2\n"
      "notify_days = [3, 30, 7, 7]\n"
      "pin_file = \"/run/user/1000/pin\"\n"
      "dojang_cli = \"/opt/dojang/bin/dojang\"\n"
      "retry_initial_seconds = 1\n"
      "retry_max_seconds = 60\n"
      "[[renewal.auto]]\n"
      "certificate = \"signkey\"\n"
      "[[renewal.auto]]\n"
      "profile = \"signkorea-general-personal\"\n"
      "max_fee_krw = 4400\n",
      "dojangd.toml");
  CHECK(config.renewal.checkInterval == std::chrono::seconds(2));
  CHECK(config.renewal.notifyDays == std::vector<int>{30, 7, 3});
  CHECK(config.renewal.pinFile == "/run/user/1000/pin");
  CHECK(config.renewal.dojangCli == "/opt/dojang/bin/dojang");
  CHECK(config.renewal.retryInitial == std::chrono::seconds(1));
  CHECK(config.renewal.retryMax == std::chrono::seconds(60));
  REQUIRE(config.renewal.automatic.size() == 2);
  CHECK(config.renewal.automatic[0] == core::AutoRenewal{"signkey", "", 0});
  CHECK(config.renewal.automatic[1] == core::AutoRenewal{"", "signkorea-general-personal", 4400});
}

TEST_CASE("[renewal] mistakes are errors naming the key", "[config][renewal]") {
  CHECK_THAT(errorOf("[renewal]\ncheck_interval_seconds = 0\n"),
             Catch::Contains("renewal.check_interval_seconds must be 1.."));
  CHECK_THAT(errorOf("[renewal]\nnotify_days = [30, -1]\n"), Catch::Contains("renewal.notify_days"));
  CHECK_THAT(errorOf("[renewal]\npin_file = \"\"\n"), Catch::Contains("renewal.pin_file must not be empty"));
  CHECK_THAT(errorOf("[[renewal.auto]]\nmax_fee_krw = 0\n"),
             Catch::Contains("renewal.auto #1 needs exactly one of certificate"));
  CHECK_THAT(errorOf("[[renewal.auto]]\ncertificate = \"a\"\nprofile = \"b\"\n"),
             Catch::Contains("renewal.auto #1 needs exactly one of certificate"));
  CHECK_THAT(errorOf("[[renewal.auto]]\nprofile = \"b\"\nmax_fee_krw = -1\n"),
             Catch::Contains("max_fee_krw must not be negative"));
}

TEST_CASE("[piv] is off by default and serves every reader when enabled", "[config][piv]") {
  CHECK_FALSE(core::parseConfig("", "dojangd.toml").piv.enabled);
  const auto config = core::parseConfig("[piv]\nenabled = true\n", "dojangd.toml");
  CHECK(config.piv.enabled);
  CHECK(config.piv.readers == std::vector<std::string>{"*"});
  CHECK(config.piv.cards.empty());
  CHECK(config.piv.overlayFile.empty());  // the driver's default: $XDG_STATE_HOME/dojang/piv-overlay.db
}

TEST_CASE("[piv] readers and [[piv.card]] management keys are read", "[config][piv]") {
  const auto config = core::parseConfig(R"(
[piv]
enabled = true
readers = ["Yubico*", "Virtual PCD*"]
overlay_file = "/var/lib/me/piv-overlay.db"
[[piv.card]]
serial = "12345678"
management_key_file = "/home/me/.config/dojang/yubikey.key"
management_key_algorithm = "aes192"
[[piv.card]]
reader = "Virtual PCD 00 00"
management_key_file = "/tmp/k"
)",
                                        "dojangd.toml");
  CHECK(config.piv.readers == std::vector<std::string>{"Yubico*", "Virtual PCD*"});
  CHECK(config.piv.overlayFile == "/var/lib/me/piv-overlay.db");
  REQUIRE(config.piv.cards.size() == 2);
  CHECK(config.piv.cards[0] ==
        dojang::piv::PivCardSettings{"12345678", "", "/home/me/.config/dojang/yubikey.key", "aes192"});
  CHECK(config.piv.cards[1] == dojang::piv::PivCardSettings{"", "Virtual PCD 00 00", "/tmp/k", ""});
}

TEST_CASE("[piv] mistakes are errors naming the key", "[config][piv]") {
  CHECK_THAT(errorOf("[piv]\nenabled = \"yes\"\n"), Catch::Contains("piv.enabled must be true or false"));
  CHECK_THAT(errorOf("[piv]\nreaders = []\n"), Catch::Contains("piv.readers must not be empty"));
  CHECK_THAT(errorOf("[piv]\nreaders = [1]\n"), Catch::Contains("piv.readers must be a list"));
  CHECK_THAT(errorOf("[piv]\noverlay_file = 3\n"), Catch::Contains("piv.overlay_file must be a path"));
  CHECK_THAT(errorOf("[[piv.card]]\nmanagement_key_file = \"/k\"\n"),
             Catch::Contains("piv.card #1 needs serial"));
  CHECK_THAT(errorOf("[[piv.card]]\nserial = \"1\"\n"), Catch::Contains("piv.card #1 needs management_key_file"));
  CHECK_THAT(errorOf("[[piv.card]]\nserial = \"1\"\nmanagement_key_file = \"/k\"\nmanagement_key_algorithm = \"des\"\n"),
             Catch::Contains("management_key_algorithm must be 3des, aes128, aes192 or aes256"));
}
