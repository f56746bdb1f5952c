// src/daemon/pinentry: one pinentry run over Assuan, with the test pinentry
// (tests/support/test-pinentry, $DOJANG_TEST_PINENTRY) and with the real pinentry-curses in tmux.
#include "src/daemon/pinentry/pinentry.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "src/daemon/pinentry/assuan_text.h"
#include "tests/support/run_command.h"
#include "tests/support/temp_dir.h"

namespace pe = dojang::daemon::pinentry;
using dojang::test::readFile;
using dojang::test::TempDir;
using dojang::test::writeFile;
using namespace std::chrono_literals;

namespace {

std::string testPinentry() {
  const char* path = std::getenv("DOJANG_TEST_PINENTRY");
  REQUIRE(path != nullptr);
  return path;
}

// A state directory for the test pinentry, exported to the children through our environment.
class PinentryDir final {
 public:
  explicit PinentryDir(const std::string& answers = {}) {
    ::setenv("DOJANG_TEST_PINENTRY_DIR", m_dir.path().c_str(), 1);
    if (!answers.empty()) {
      writeFile(m_dir / "answers", answers);
    }
  }
  ~PinentryDir() { ::unsetenv("DOJANG_TEST_PINENTRY_DIR"); }
  PinentryDir(const PinentryDir&) = delete;
  PinentryDir& operator=(const PinentryDir&) = delete;

  std::vector<nlohmann::json> prompts() const {
    std::vector<nlohmann::json> records;
    std::ifstream in(m_dir / "prompts.jsonl");
    for (std::string line; std::getline(in, line);) {
      records.push_back(nlohmann::json::parse(line));
    }
    return records;
  }
  bool anyStarted() const { return std::filesystem::exists(m_dir / "starts.log"); }
  // Waits (bounded) until `count` GETPINs were received.
  void awaitPrompts(std::size_t count) const {
    const auto until = std::chrono::steady_clock::now() + 10s;
    while (prompts().size() < count && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(20ms);
    }
    REQUIRE(prompts().size() >= count);
  }

 private:
  TempDir m_dir{"dojang-pinentry-"};
};

pe::PromptRequest requestFor(const std::string& program) {
  pe::PromptRequest request;
  request.program = program;
  request.tty = "/dev/pts/dojang-test";  // the test pinentry only records it
  request.ttyType = "xterm";
  request.description = "Enter the PIN";
  request.timeout = 20s;
  return request;
}

std::string pinText(const dojang::SecureBytes& pin) {
  return std::string(reinterpret_cast<const char*>(pin.data()), pin.size());
}

bool processGone(pid_t pid) {
  return ::kill(pid, 0) != 0 && errno == ESRCH;
}

// No child of this process is left unreaped (every Prompt reaps its pinentry).
bool noChildren() {
  return ::waitpid(-1, nullptr, WNOHANG) < 0 && errno == ECHILD;
}

}  // namespace

TEST_CASE("texts are percent-escaped and cut to one Assuan line", "[pinentry]") {
  CHECK(pe::assuanCommand("SETDESC", "a%b\r\nc") == "SETDESC a%25b%0D%0Ac");
  CHECK(pe::assuanCommand("SETDESC", "홍길동") == "SETDESC 홍길동");
  std::string korean;
  for (int i = 0; i < 400; ++i) {
    korean += "길";
  }
  const auto line = pe::assuanCommand("SETDESC", korean);
  CHECK(line.size() <= pe::kAssuanMaxLine);
  CHECK((line.size() - 8) % 3 == 0);  // whole characters only
  const auto escapes = pe::assuanCommand("SETDESC", std::string(600, '%'));
  CHECK(escapes.size() <= pe::kAssuanMaxLine);
  CHECK((escapes.size() - 8) % 3 == 0);  // whole escapes only
}

TEST_CASE("the PIN typed into pinentry comes back as its bytes", "[pinentry]") {
  PinentryDir dir("pin:12 34%56\n");
  auto request = requestFor(testPinentry());
  request.display = ":7";
  request.waylandDisplay = "wayland-7";
  request.xauthority = "/tmp/dojang-xauth";
  request.lcCtype = "C.UTF-8";
  pe::Prompt prompt(request);
  const auto result = prompt.run();
  REQUIRE(result.outcome == pe::PromptOutcome::Entered);
  CHECK(pinText(result.pin) == "12 34%56");
  const auto prompts = dir.prompts();
  REQUIRE(prompts.size() == 1);
  const auto& seen = prompts[0];
  CHECK(seen["options"]["ttyname"] == "/dev/pts/dojang-test");
  CHECK(seen["options"]["ttytype"] == "xterm");
  CHECK(seen["options"]["display"] == ":7");
  CHECK(seen["options"]["lc-ctype"] == "C.UTF-8");
  CHECK(seen["env"]["WAYLAND_DISPLAY"] == "wayland-7");
  CHECK(seen["env"]["DISPLAY"] == ":7");
  CHECK(seen["env"]["XAUTHORITY"] == "/tmp/dojang-xauth");
  CHECK(seen["timeout"] == "20");
  const auto argv = seen["argv"].get<std::vector<std::string>>();
  CHECK(std::find(argv.begin(), argv.end(), "--ttyname") != argv.end());
  CHECK(std::find(argv.begin(), argv.end(), "--display") != argv.end());
  CHECK(noChildren());
}

TEST_CASE("a Korean multi-line description with % arrives intact, with every label", "[pinentry]") {
  PinentryDir dir("pin:0000\n");
  auto request = requestFor(testPinentry());
  request.title = "dojang: 홍길동";
  request.description = "chromium이 서명하려 합니다: 홍길동 (SignKorea 범용 개인)\n100% 확실?\r\n끝";
  request.prompt = "PIN:";
  request.okLabel = "서명";
  request.cancelLabel = "취소";
  request.errorText = "Wrong PIN, 2 tries left";
  request.repeat = true;
  request.repeatError = "PINs do not match";
  pe::Prompt prompt(request);
  REQUIRE(prompt.run().outcome == pe::PromptOutcome::Entered);
  const auto prompts = dir.prompts();
  REQUIRE(prompts.size() == 1);
  const auto& seen = prompts[0];
  CHECK(seen["desc"] == request.description);
  CHECK(seen["title"] == request.title);
  CHECK(seen["prompt"] == "PIN:");
  CHECK(seen["ok"] == "서명");
  CHECK(seen["cancel"] == "취소");
  CHECK(seen["error"] == "Wrong PIN, 2 tries left");
  CHECK(seen.contains("repeat"));
  CHECK(seen["repeaterror"] == "PINs do not match");
}

TEST_CASE("no SETERROR without an error text", "[pinentry]") {
  PinentryDir dir("pin:1\n");
  pe::Prompt prompt(requestFor(testPinentry()));
  REQUIRE(prompt.run().outcome == pe::PromptOutcome::Entered);
  CHECK_FALSE(dir.prompts().at(0).contains("error"));
}

TEST_CASE("Cancel in pinentry is Canceled", "[pinentry]") {
  PinentryDir dir("cancel\n");
  pe::Prompt prompt(requestFor(testPinentry()));
  const auto result = prompt.run();
  CHECK(result.outcome == pe::PromptOutcome::Canceled);
  CHECK(result.pin.empty());
  CHECK(noChildren());
}

TEST_CASE("a late answer still arrives", "[pinentry]") {
  PinentryDir dir("sleep:0.3:then-pin:9876\n");
  pe::Prompt prompt(requestFor(testPinentry()));
  const auto result = prompt.run();
  REQUIRE(result.outcome == pe::PromptOutcome::Entered);
  CHECK(pinText(result.pin) == "9876");
}

TEST_CASE("cancel() from another thread ends a prompt nobody answers, and its child", "[pinentry]") {
  PinentryDir dir("hang\n");
  pe::Prompt prompt(requestFor(testPinentry()));
  auto running = std::async(std::launch::async, [&] { return prompt.run(); });
  dir.awaitPrompts(1);
  const auto pid = dir.prompts()[0]["pid"].get<pid_t>();
  const auto canceledAt = std::chrono::steady_clock::now();
  prompt.cancel();
  prompt.cancel();  // idempotent
  REQUIRE(running.wait_for(5s) == std::future_status::ready);
  CHECK(std::chrono::steady_clock::now() - canceledAt < 3s);
  CHECK(running.get().outcome == pe::PromptOutcome::Canceled);
  CHECK(processGone(pid));
  CHECK(noChildren());
}

TEST_CASE("cancel() before run() starts nothing", "[pinentry]") {
  PinentryDir dir("pin:1\n");
  pe::Prompt prompt(requestFor(testPinentry()));
  prompt.cancel();
  CHECK(prompt.run().outcome == pe::PromptOutcome::Canceled);
  CHECK_FALSE(dir.anyStarted());
}

TEST_CASE("a pinentry that never answers is killed at the deadline: TimedOut", "[pinentry]") {
  PinentryDir dir("hang\n");
  auto request = requestFor(testPinentry());
  request.timeout = 1s;
  pe::Prompt prompt(request);
  const auto started = std::chrono::steady_clock::now();
  const auto result = prompt.run();
  CHECK(result.outcome == pe::PromptOutcome::TimedOut);
  CHECK(std::chrono::steady_clock::now() - started < 1s + pe::kDeadlineGrace + 5s);
  REQUIRE(dir.prompts().size() == 1);
  CHECK(processGone(dir.prompts()[0]["pid"].get<pid_t>()));
  CHECK(noChildren());
}

TEST_CASE("pinentry's own timeout is TimedOut", "[pinentry]") {
  PinentryDir dir("timeout\n");
  pe::Prompt prompt(requestFor(testPinentry()));
  CHECK(prompt.run().outcome == pe::PromptOutcome::TimedOut);
}

TEST_CASE("a missing pinentry fails at once with the name", "[pinentry]") {
  for (const std::string program : {"/nonexistent/pinentry", "dojang-no-such-pinentry"}) {
    pe::Prompt prompt(requestFor(program));
    const auto result = prompt.run();
    CHECK(result.outcome == pe::PromptOutcome::Failed);
    CHECK(result.detail == "pinentry not found: " + program);
  }
}

TEST_CASE("a pinentry that exits before greeting fails with its status, never hangs", "[pinentry]") {
  pe::Prompt prompt(requestFor("false"));
  const auto result = prompt.run();
  CHECK(result.outcome == pe::PromptOutcome::Failed);
  CHECK_THAT(result.detail, Catch::Contains("exited with status 1"));
  CHECK(result.detail.find('\n') == std::string::npos);
  CHECK(noChildren());
}

TEST_CASE("a pinentry that cannot be executed fails with why", "[pinentry]") {
  TempDir dir("dojang-pinentry-");
  const auto script = dir / "broken-pinentry";
  writeFile(script, "#!/nonexistent/interpreter\n");
  std::filesystem::permissions(script, std::filesystem::perms::owner_all);
  pe::Prompt prompt(requestFor(script.string()));
  const auto result = prompt.run();
  CHECK(result.outcome == pe::PromptOutcome::Failed);
  CHECK(result.detail == "cannot start pinentry " + script.string() + ": No such file or directory");
  CHECK(noChildren());
}

TEST_CASE("without a display or tty nothing is started", "[pinentry]") {
  PinentryDir dir("pin:1\n");
  auto request = requestFor(testPinentry());
  request.tty.clear();
  CHECK_FALSE(pe::hasSurface(request));
  pe::Prompt prompt(request);
  const auto result = prompt.run();
  CHECK(result.outcome == pe::PromptOutcome::Failed);
  CHECK(result.detail == "no display or tty to ask on");
  CHECK_FALSE(dir.anyStarted());
  request.waylandDisplay = "wayland-0";
  CHECK(pe::hasSurface(request));
}

TEST_CASE("the pinentry inherits none of our descriptors", "[pinentry]") {
  PinentryDir dir("pin:1\n");
  const int open = ::open("/dev/null", O_RDONLY);  // no O_CLOEXEC: exec alone would pass it on
  REQUIRE(open >= 0);
  const int high = ::dup2(open, 200);
  pe::Prompt prompt(requestFor(testPinentry()));
  REQUIRE(prompt.run().outcome == pe::PromptOutcome::Entered);
  ::close(open);
  ::close(high);
  CHECK(dir.prompts().at(0)["fds"].empty());
}

TEST_CASE("two prompts at once each get their own answer", "[pinentry]") {
  PinentryDir dir("sleep:0.3:then-pin:1111\nsleep:0.3:then-pin:2222\n");
  pe::Prompt first(requestFor(testPinentry()));
  pe::Prompt second(requestFor(testPinentry()));
  auto a = std::async(std::launch::async, [&] { return first.run(); });
  auto b = std::async(std::launch::async, [&] { return second.run(); });
  const auto resultA = a.get();
  const auto resultB = b.get();
  REQUIRE(resultA.outcome == pe::PromptOutcome::Entered);
  REQUIRE(resultB.outcome == pe::PromptOutcome::Entered);
  CHECK(std::set<std::string>{pinText(resultA.pin), pinText(resultB.pin)} ==
        std::set<std::string>{"1111", "2222"});
  const auto prompts = dir.prompts();
  REQUIRE(prompts.size() == 2);
  CHECK(prompts[0]["pid"] != prompts[1]["pid"]);
  CHECK(noChildren());
}
