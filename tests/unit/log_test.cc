// dojangd's log: whatever a client sends (program names, labels, error texts) reaches it as one
// line, with control characters and broken UTF-8 escaped, so nobody can forge a line.
#include <fcntl.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "src/daemon/log.h"
#include "tests/support/temp_dir.h"

namespace core = dojang::daemon;

TEST_CASE("printable text, Korean included, is logged as it is", "[log]") {
  CHECK(core::escapeForLog("client 1 connected: firefox (pid 42)") == "client 1 connected: firefox (pid 42)");
  CHECK(core::escapeForLog("SignKorea 범용 개인 홍길동") == "SignKorea 범용 개인 홍길동");
  CHECK(core::escapeForLog("") == "");
}

TEST_CASE("control characters and the backslash are escaped", "[log]") {
  CHECK(core::escapeForLog("evil\ndojangd: error: forged") == "evil\\ndojangd: error: forged");
  CHECK(core::escapeForLog("a\rb\tc") == "a\\rb\\tc");
  CHECK(core::escapeForLog("\x1b[2J\x7f") == "\\x1b[2J\\x7f");
  CHECK(core::escapeForLog(std::string("nul\0here", 8)) == "nul\\x00here");
  CHECK(core::escapeForLog("C:\\path") == "C:\\\\path");
  // C1 controls are valid UTF-8 but still steer some terminals.
  CHECK(core::escapeForLog("\xc2\x9b" "31m") == "\\xc2\\x9b31m");
}

TEST_CASE("bytes that are not UTF-8 are escaped one by one", "[log]") {
  CHECK(core::escapeForLog("\xff") == "\\xff");
  CHECK(core::escapeForLog("cut \xed\x95") == "cut \\xed\\x95");        // two thirds of 한
  CHECK(core::escapeForLog("\xc0\xaf") == "\\xc0\\xaf");                // overlong '/'
  CHECK(core::escapeForLog("\xed\xa0\x80") == "\\xed\\xa0\\x80");       // a UTF-16 surrogate
  CHECK(core::escapeForLog("\xf4\x90\x80\x80") == "\\xf4\\x90\\x80\\x80");  // beyond U+10FFFF
  CHECK(core::escapeForLog("\xe2\x82" "A") == "\\xe2\\x82A");
}

TEST_CASE("every log function writes the escaped text", "[log]") {
  ::unsetenv("JOURNAL_STREAM");
  dojang::test::TempDir dir("dojang-log-");
  const auto file = dir / "stderr";
  const int saved = ::dup(STDERR_FILENO);
  const int capture = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  REQUIRE(saved >= 0);
  REQUIRE(capture >= 0);
  REQUIRE(::dup2(capture, STDERR_FILENO) == STDERR_FILENO);
  core::logInfo("one\ntwo");
  core::logWarning("three\r\nfour");
  core::logError("five\x1b");
  core::setVerbose(true);
  core::logDebug("six\nseven");
  core::setVerbose(false);
  std::fflush(stderr);
  ::dup2(saved, STDERR_FILENO);
  ::close(saved);
  ::close(capture);
  CHECK(dojang::test::readFile(file) ==
        "dojangd: one\\ntwo\n"
        "dojangd: warning: three\\r\\nfour\n"
        "dojangd: error: five\\x1b\n"
        "dojangd: debug: six\\nseven\n");
}
