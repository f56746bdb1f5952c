#include "src/cli/pin_report.h"

namespace dojang::cli {

namespace {

PinReport report(bool locked, bool finalTry, bool countLow, std::int32_t retriesLeft) {
  PinReport result;
  if (retriesLeft >= 0) {
    result.retriesLeft = retriesLeft;
  }
  if (locked) {
    result.condition = PinCondition::Locked;
    result.retriesLeft = 0;
  } else if (finalTry) {
    result.condition = PinCondition::FinalTry;
    result.retriesLeft = 1;
  } else if (countLow) {
    result.condition = PinCondition::CountLow;
  }
  return result;
}

}  // namespace

PinReport userPinReport(CK_FLAGS flags, std::int32_t retriesLeft) {
  if ((flags & CKF_USER_PIN_INITIALIZED) == 0) {
    return {PinCondition::NotSet, std::nullopt};
  }
  return report((flags & CKF_USER_PIN_LOCKED) != 0, (flags & CKF_USER_PIN_FINAL_TRY) != 0,
                (flags & CKF_USER_PIN_COUNT_LOW) != 0, retriesLeft);
}

PinReport soPinReport(CK_FLAGS flags, std::int32_t retriesLeft) {
  return report((flags & CKF_SO_PIN_LOCKED) != 0, (flags & CKF_SO_PIN_FINAL_TRY) != 0,
                (flags & CKF_SO_PIN_COUNT_LOW) != 0, retriesLeft);
}

const char* conditionName(PinCondition condition) noexcept {
  switch (condition) {
    case PinCondition::Ok:
      return "ok";
    case PinCondition::CountLow:
      return "count low";
    case PinCondition::FinalTry:
      return "final try";
    case PinCondition::Locked:
      return "locked";
    case PinCondition::NotSet:
      return "not set";
  }
  return "unknown";
}

std::string triesLeftText(int retriesLeft) {
  return std::to_string(retriesLeft) + (retriesLeft == 1 ? " try left" : " tries left");
}

std::string describePin(const PinReport& report, bool userPin) {
  switch (report.condition) {
    case PinCondition::Locked:
      return userPin ? "LOCKED (use `dojang pin unblock`)" : "LOCKED";
    case PinCondition::NotSet:
      return "not set";
    case PinCondition::FinalTry:
      return "final try: 1 try left, one more wrong PIN locks it";
    case PinCondition::CountLow:
      return report.retriesLeft ? "count low: " + triesLeftText(*report.retriesLeft)
                                : "count low (a wrong PIN was given)";
    case PinCondition::Ok:
      break;
  }
  return report.retriesLeft ? "ok, " + triesLeftText(*report.retriesLeft) : "ok";
}

bool isPromptMode(CK_FLAGS flags) noexcept {
  return (flags & CKF_PROTECTED_AUTHENTICATION_PATH) != 0 && (flags & CKF_LOGIN_REQUIRED) == 0;
}

}  // namespace dojang::cli
