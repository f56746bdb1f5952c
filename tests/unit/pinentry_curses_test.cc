// The real pinentry-curses, on the tty of a tmux pane: capture-pane reads the prompt, send-keys
// types the PIN, or moves to the Cancel button and presses it.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <string>
#include <thread>

#include "src/daemon/pinentry/pinentry.h"
#include "tests/support/run_command.h"
#include "tests/support/temp_dir.h"

namespace pe = dojang::daemon::pinentry;
using dojang::test::runCommand;
using dojang::test::TempDir;
using namespace std::chrono_literals;

namespace {

bool inPath(const std::string& program) {
  return runCommand({"sh", "-c", "command -v " + program}).exitCode == 0;
}

// A tmux server on a private socket with one 100x30 pane; the pane runs `sleep` rather than a
// shell, so nothing but pinentry-curses reads the tty. The server is killed with the owner.
class TmuxPane final {
 public:
  TmuxPane() {
    const auto started = tmux({"new-session", "-d", "-x", "100", "-y", "30", "sleep 600"});
    REQUIRE(started.exitCode == 0);
    auto tty = tmux({"display-message", "-p", "#{pane_tty}"}).out;
    while (!tty.empty() && (tty.back() == '\n' || tty.back() == '\r')) {
      tty.pop_back();
    }
    REQUIRE(tty.starts_with("/dev/"));
    m_tty = tty;
  }
  ~TmuxPane() { (void)tmux({"kill-server"}); }
  TmuxPane(const TmuxPane&) = delete;
  TmuxPane& operator=(const TmuxPane&) = delete;

  [[nodiscard]] const std::string& tty() const noexcept { return m_tty; }
  std::string screen() { return tmux({"capture-pane", "-p"}).out; }
  // Waits (bounded) until `text` is on the screen.
  bool awaitText(const std::string& text) {
    const auto until = std::chrono::steady_clock::now() + 15s;
    while (std::chrono::steady_clock::now() < until) {
      if (screen().find(text) != std::string::npos) {
        return true;
      }
      std::this_thread::sleep_for(100ms);
    }
    return false;
  }
  void keys(std::vector<std::string> keys) {
    keys.insert(keys.begin(), "send-keys");
    REQUIRE(tmux(keys).exitCode == 0);
  }

 private:
  dojang::test::CommandResult tmux(std::vector<std::string> arguments) {
    arguments.insert(arguments.begin(), {"tmux", "-S", (m_dir / "tmux.sock").string(), "-f", "/dev/null"});
    dojang::test::CommandOptions options;
    options.timeout = 10s;
    return runCommand(arguments, options);
  }
  TempDir m_dir{"dojang-tmux-"};
  std::string m_tty;
};

pe::PromptRequest curses(const std::string& tty) {
  pe::PromptRequest request;
  request.program = "pinentry-curses";
  request.tty = tty;
  request.ttyType = "xterm";
  request.lcCtype = "C.UTF-8";
  request.title = "dojang";
  request.description = "dojang-tmux-test wants to sign as 홍길동\n2 tries left";
  request.prompt = "PIN:";
  request.timeout = 30s;
  return request;
}

// run() of a prompt in another thread; a prompt that did not end by the keys is canceled (so never
// left behind) and fails the test.
pe::PromptResult finish(pe::Prompt& prompt, std::future<pe::PromptResult>& running) {
  const bool endedByKeys = running.wait_for(15s) == std::future_status::ready;
  if (!endedByKeys) {
    prompt.cancel();
  }
  auto result = running.get();
  CHECK(endedByKeys);
  return result;
}

}  // namespace

TEST_CASE("pinentry-curses in tmux: the typed PIN comes back", "[pinentry][tmux]") {
  if (!inPath("pinentry-curses") || !inPath("tmux")) {
    WARN("pinentry-curses or tmux is not installed (scripts/install-deps.sh)");
    return;
  }
  TmuxPane pane;
  pe::Prompt prompt(curses(pane.tty()));
  auto running = std::async(std::launch::async, [&] { return prompt.run(); });
  const bool shown = pane.awaitText("dojang-tmux-test wants to sign");
  INFO(pane.screen());
  if (shown) {
    CHECK(pane.screen().find("2 tries left") != std::string::npos);
    pane.keys({"-l", "4711 08"});
    pane.keys({"Enter"});
  }
  const auto result = finish(prompt, running);
  REQUIRE(shown);
  REQUIRE(result.outcome == pe::PromptOutcome::Entered);
  CHECK(std::string(reinterpret_cast<const char*>(result.pin.data()), result.pin.size()) == "4711 08");
}

TEST_CASE("pinentry-curses in tmux: its Cancel button is Canceled", "[pinentry][tmux]") {
  if (!inPath("pinentry-curses") || !inPath("tmux")) {
    WARN("pinentry-curses or tmux is not installed (scripts/install-deps.sh)");
    return;
  }
  TmuxPane pane;
  pe::Prompt prompt(curses(pane.tty()));
  auto running = std::async(std::launch::async, [&] { return prompt.run(); });
  const bool shown = pane.awaitText("dojang-tmux-test wants to sign");
  if (shown) {
    CHECK(pane.screen().find("<Cancel>") != std::string::npos);
    // From the PIN field: Tab to OK, Tab to Cancel, Enter. (Escape is Alt to pinentry-curses.)
    pane.keys({"Tab"});
    pane.keys({"Tab"});
    pane.keys({"Enter"});
  }
  const auto result = finish(prompt, running);
  REQUIRE(shown);
  CHECK(result.outcome == pe::PromptOutcome::Canceled);
  CHECK(result.pin.empty());
}
