// A scripted card for unit tests of the PC/SC APDU layer and the PIV card logic: it replays
// expected command/response pairs in order, or answers through a callback where the answer
// depends on the command (cryptograms, signatures). Every command sent is kept.
#pragma once

#include <catch2/catch.hpp>

#include <cctype>
#include <deque>
#include <functional>
#include <optional>
#include <string>

#include "drivers/pcsc/apdu.h"
#include "src/common/cryptoki/hex_text.h"

namespace dojang::test {

using Bytes = std::vector<std::uint8_t>;

inline Bytes fromHex(std::string_view text) {
  Bytes out;
  int high = -1;
  for (const char c : text) {
    if (std::isxdigit(static_cast<unsigned char>(c)) == 0) {
      continue;
    }
    const int value = std::isdigit(static_cast<unsigned char>(c)) != 0 ? c - '0' : std::tolower(c) - 'a' + 10;
    if (high < 0) {
      high = value;
    } else {
      out.push_back(static_cast<std::uint8_t>((high << 4) | value));
      high = -1;
    }
  }
  return out;
}

inline Bytes concat(Bytes a, const Bytes& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

class ScriptedCard final : public pcsc::ApduChannel {
 public:
  using Responder = std::function<Bytes(std::span<const std::uint8_t>)>;

  void expect(const Bytes& command, const Bytes& answer) {
    m_steps.push_back({command, [answer](std::span<const std::uint8_t>) { return answer; }});
  }
  void expect(std::string_view command, std::string_view answer) { expect(fromHex(command), fromHex(answer)); }
  // The next command, whatever it is, answered by `responder`.
  void respond(Responder responder) { m_steps.push_back({std::nullopt, std::move(responder)}); }

  Bytes transmit(std::span<const std::uint8_t> command) override {
    sent.emplace_back(command.begin(), command.end());
    if (m_steps.empty()) {
      FAIL("unexpected APDU " << hexText(command));
    }
    Step step = std::move(m_steps.front());
    m_steps.pop_front();
    if (step.command) {
      CHECK(hexText(command) == hexText(*step.command));
    }
    return step.responder(command);
  }

  [[nodiscard]] bool finished() const { return m_steps.empty(); }
  std::vector<Bytes> sent;

 private:
  struct Step {
    std::optional<Bytes> command;
    Responder responder;
  };
  std::deque<Step> m_steps;
};

}  // namespace dojang::test
