// What `dojang pin status` says about a token's PINs: their condition from CK_TOKEN_INFO's flags,
// and the exact tries left where dojangd knows them (DaemonStatus). Pure, for the unit tier.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "src/common/cryptoki/cryptoki.h"

namespace dojang::cli {

enum class PinCondition : std::uint8_t { Ok, CountLow, FinalTry, Locked, NotSet };

struct PinReport {
  PinCondition condition = PinCondition::Ok;
  std::optional<int> retriesLeft;  // exact, or implied by the flags (final try: 1, locked: 0)
};

// `retriesLeft` as dojangd reports it: -1 when the token does not tell.
[[nodiscard]] PinReport userPinReport(CK_FLAGS flags, std::int32_t retriesLeft);
[[nodiscard]] PinReport soPinReport(CK_FLAGS flags, std::int32_t retriesLeft);

// "ok", "count low", "final try", "locked", "not set": the JSON's words.
[[nodiscard]] const char* conditionName(PinCondition condition) noexcept;
// "1 try left", "3 tries left".
[[nodiscard]] std::string triesLeftText(int retriesLeft);
// For people: "ok, 3 tries left", "count low: 2 tries left", "final try: 1 try left, ...",
// "LOCKED (use `dojang pin unblock`)" for the user PIN, "not set".
[[nodiscard]] std::string describePin(const PinReport& report, bool userPin);

// dojangd's prompt mode as a token shows it: a protected authentication path and no login required.
[[nodiscard]] bool isPromptMode(CK_FLAGS flags) noexcept;

}  // namespace dojang::cli
