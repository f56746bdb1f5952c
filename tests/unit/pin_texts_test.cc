// What PIN changes say: the PIN states of `dojang pin status` from CK_TOKEN_INFO's flags and
// dojangd's counts, and dojangd's prompts for a PIN change or reset.
#include <catch2/catch.hpp>

#include "src/cli/pin_report.h"
#include "src/daemon/prompting/pin_prompter.h"

using dojang::cli::describePin;
using dojang::cli::isPromptMode;
using dojang::cli::PinCondition;
using dojang::cli::soPinReport;
using dojang::cli::userPinReport;

TEST_CASE("pin status: the user PIN's condition from the flags, the exact count from dojangd", "[cli][pin]") {
  constexpr CK_FLAGS set = CKF_USER_PIN_INITIALIZED;
  CHECK(userPinReport(set, -1).condition == PinCondition::Ok);
  CHECK_FALSE(userPinReport(set, -1).retriesLeft);
  CHECK(describePin(userPinReport(set, -1), true) == "ok");
  CHECK(describePin(userPinReport(set, 3), true) == "ok, 3 tries left");
  CHECK(describePin(userPinReport(set | CKF_USER_PIN_COUNT_LOW, 2), true) == "count low: 2 tries left");
  CHECK(describePin(userPinReport(set | CKF_USER_PIN_COUNT_LOW, -1), true) ==
        "count low (a wrong PIN was given)");
  // The last two are exact without a count: final try is one, locked is none.
  const auto finalTry = userPinReport(set | CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY, -1);
  CHECK(finalTry.condition == PinCondition::FinalTry);
  CHECK(finalTry.retriesLeft == 1);
  CHECK(describePin(finalTry, true) == "final try: 1 try left, one more wrong PIN locks it");
  const auto locked = userPinReport(set | CKF_USER_PIN_LOCKED, -1);
  CHECK(locked.retriesLeft == 0);
  CHECK(describePin(locked, true) == "LOCKED (use `dojang pin unblock`)");
  CHECK(describePin(userPinReport(0, -1), true) == "not set");
  CHECK(describePin(soPinReport(CKF_SO_PIN_LOCKED, -1), false) == "LOCKED");
  CHECK(soPinReport(CKF_USER_PIN_LOCKED, 5).condition == PinCondition::Ok);
  CHECK(dojang::cli::triesLeftText(1) == "1 try left");
}

TEST_CASE("pin status: prompt mode is a PIN path without login required", "[cli][pin]") {
  CHECK(isPromptMode(CKF_PROTECTED_AUTHENTICATION_PATH));
  CHECK_FALSE(isPromptMode(CKF_PROTECTED_AUTHENTICATION_PATH | CKF_LOGIN_REQUIRED));  // a PIN pad
  CHECK_FALSE(isPromptMode(CKF_LOGIN_REQUIRED));
}

TEST_CASE("dojangd's prompts for a PIN change say which PIN they want", "[daemon][prompt][pin]") {
  dojang::daemon::PromptNeed need;
  need.tokenLabel = "my token";
  need.operation = "change the PIN";
  need.secret = dojang::daemon::PromptSecret::CurrentPin;
  need.pin = dojang::token::PinState::fromCounts(2, 3);
  auto text = dojang::daemon::promptText("dojang", 42, need, "C.UTF-8");
  CHECK(text.description ==
        "dojang (pid 42) wants to change the PIN of token my token.\n"
        "Type the current PIN.\n2 tries left.");
  CHECK(text.prompt == "Current PIN:");
  CHECK(text.errorText == "A wrong PIN was entered before. 2 tries left.");

  need.secret = dojang::daemon::PromptSecret::NewPin;
  text = dojang::daemon::promptText("dojang", 42, need, "C.UTF-8");
  CHECK(text.description ==
        "dojang (pid 42) wants to change the PIN of token my token.\n"
        "Type the new PIN, then once more to confirm it.");
  CHECK(text.prompt == "New PIN:");
  CHECK(text.errorText.empty());  // nothing to do with the old PIN's tries
  CHECK(text.repeatError == "The PINs do not match.");

  need.operation = "reset the PIN";
  text = dojang::daemon::promptText("dojang", 42, need, "ko_KR.UTF-8");
  CHECK(text.prompt == "새 PIN");
  CHECK(text.description.find("PIN 재설정") != std::string::npos);

  need.user = CKU_SO;
  need.operation = "change the SO PIN";
  need.secret = dojang::daemon::PromptSecret::CurrentPin;
  need.pin = {};
  text = dojang::daemon::promptText("pkcs11-tool", 7, need, "");
  CHECK(text.prompt == "Current SO PIN:");
  CHECK(text.description ==
        "pkcs11-tool (pid 7) wants to change the SO PIN of token my token.\nType the current SO PIN.");
}
