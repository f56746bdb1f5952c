// `dojang pin status|change|unblock`: the PIN state of each token with the exact tries left where
// dojangd knows them, C_SetPIN, and C_Login(CKU_SO) + C_InitPIN with the PUK / SO PIN. The PINs
// come from files (mode 0600) or, without files, from dojangd's own prompt (pinentry): the PINs
// are then given empty (C_SetPIN, C_InitPIN) or NULL (C_Login), which dojangd takes as "ask".
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "src/cli/commands.h"
#include "src/cli/daemon_client.h"
#include "src/cli/module_command.h"
#include "src/cli/pin_files.h"
#include "src/cli/pin_report.h"
#include "src/cli/table.h"
#include "src/common/cryptoki/padded_text.h"
#include "src/common/errors/error.h"
#include "src/common/wire/socket_path.h"

namespace dojang::cli {

namespace {

struct ChosenToken {
  CK_SLOT_ID slot = 0;
  std::string label;
};

std::vector<ChosenToken> initialisedTokens(const Pkcs11Library& library,
                                           const std::optional<std::string>& label) {
  std::vector<ChosenToken> tokens;
  for (const CK_SLOT_ID slot : library.slots(true)) {
    const CK_TOKEN_INFO info = library.tokenInfo(slot);
    if ((info.flags & CKF_TOKEN_INITIALIZED) == 0) {
      continue;  // SoftHSM's spare slot, a blank card: no PIN to speak of
    }
    const auto tokenLabel = paddedText(info.label);
    if (!label || *label == tokenLabel) {
      tokens.push_back({slot, tokenLabel});
    }
  }
  if (tokens.empty()) {
    throw CommandError(kExitFailure,
                       label ? "no token labelled \"" + *label + "\" (module " + library.path() + ")"
                             : "no initialised token found (module " + library.path() + ")",
                       {{"module", library.path()}});
  }
  return tokens;
}

ChosenToken chooseToken(const Pkcs11Library& library, const std::optional<std::string>& label) {
  auto tokens = initialisedTokens(library, label);
  if (tokens.size() > 1) {
    std::string labels;
    for (const auto& token : tokens) {
      labels += (labels.empty() ? "\"" : ", \"") + token.label + "\"";
    }
    throw CommandError(kExitUsage, "several tokens (" + labels + "): choose one with --token LABEL");
  }
  return tokens.front();
}

// dojangd's view of each slot, by slot id (the module shows dojangd's slot ids), for the exact
// tries left. Empty for another vendor's module, and when dojangd cannot be asked.
std::map<CK_SLOT_ID, wire::SlotStatus> daemonSlots(const Pkcs11Library& library) {
  std::map<CK_SLOT_ID, wire::SlotStatus> slots;
  if (paddedText(library.info().manufacturerID) != "dojang") {
    return slots;
  }
  try {
    for (auto& slot : queryDaemonStatus(wire::defaultSocketPath()).status.slots) {
      slots.emplace(static_cast<CK_SLOT_ID>(slot.slot), std::move(slot));
    }
  } catch (const std::exception&) {
    // The flags still tell the condition of each PIN; only the exact counts are missing.
  }
  return slots;
}

struct PinReports {
  PinReport user, so;
};

PinReports reportsFor(const Pkcs11Library& library, CK_SLOT_ID slot,
                      const std::map<CK_SLOT_ID, wire::SlotStatus>& daemon) {
  const CK_TOKEN_INFO info = library.tokenInfo(slot);
  const auto it = daemon.find(slot);
  const std::int32_t user = it == daemon.end() ? -1 : it->second.userPinRetriesLeft;
  const std::int32_t so = it == daemon.end() ? -1 : it->second.soPinRetriesLeft;
  return {userPinReport(info.flags, user), soPinReport(info.flags, so)};
}

nlohmann::json pinJson(const PinReport& report) {
  return {
      {"state", conditionName(report.condition)},
      {"retriesLeft", report.retriesLeft ? nlohmann::json(*report.retriesLeft) : nlohmann::json(nullptr)}};
}

CK_UTF8CHAR* pinPointer(const std::optional<SecureBytes>& pin) {
  // PKCS#11 takes PINs through non-const pointers; no module writes to them.
  return pin ? const_cast<CK_UTF8CHAR*>(pin->view().data()) : nullptr;
}
CK_ULONG pinLength(const std::optional<SecureBytes>& pin) {
  return pin ? static_cast<CK_ULONG>(pin->size()) : 0;
}

// Both files or neither: half the PINs from a file and half from a prompt is a mistake.
void requireBoth(const std::optional<std::string>& first, const char* firstName,
                 const std::optional<std::string>& second, const char* secondName) {
  if (first.has_value() != second.has_value()) {
    throw CommandError(kExitUsage, std::string(first ? secondName : firstName) + " is needed with " +
                                       (first ? firstName : secondName) +
                                       " (give both files, or neither to be asked by dojangd's PIN prompt)");
  }
}

// Which PIN a failed call was about, for its message.
enum class PinRole { CurrentPin, SoPin, NewPin };

// A failed PIN call as the person should read it: what was wrong, and what is left to try.
[[noreturn]] void failPinCall(const Pkcs11Library& library, const ChosenToken& token, CK_RV rv, PinRole role,
                              const char* call) {
  const bool so = role == PinRole::SoPin;
  const std::string secret = so ? "PUK (SO PIN)" : role == PinRole::NewPin ? "new PIN" : "PIN";
  const std::string quoted = "\"" + token.label + "\"";
  nlohmann::json details{{"token", token.label}, {"slot", token.slot}, {"rv", ckRvName(rv)}, {"call", call}};
  std::string message;
  switch (rv) {
    case CKR_PIN_INCORRECT: {
      const auto reports = reportsFor(library, token.slot, daemonSlots(library));
      const auto& report = so ? reports.so : reports.user;
      std::string left;
      if (report.condition == PinCondition::Locked) {
        left = so ? "it is locked now" : "it is locked now: use `dojang pin unblock`";
      } else if (report.condition == PinCondition::FinalTry) {
        left = "1 try left: one more wrong " + secret + " locks it";
      } else if (report.retriesLeft) {
        left = triesLeftText(*report.retriesLeft);
      } else {
        left = "the token does not say how many tries are left";
      }
      details["retriesLeft"] =
          report.retriesLeft ? nlohmann::json(*report.retriesLeft) : nlohmann::json(nullptr);
      message = "wrong " + secret + " for token " + quoted + " (" + left + "); nothing was changed";
      break;
    }
    case CKR_PIN_LOCKED:
      message = so ? "the PUK (SO PIN) of token " + quoted +
                         " is locked; only re-initialising the token (losing its keys) helps"
                   : "the PIN of token " + quoted + " is locked: unblock it with `dojang pin unblock`";
      break;
    case CKR_FUNCTION_CANCELED:
      message = "the PIN prompt was cancelled; nothing was changed";
      break;
    case CKR_PIN_LEN_RANGE:
    case CKR_PIN_INVALID:
      message = "token " + quoted + " refuses that " + secret +
                ": its length or characters are not allowed (" + ckRvName(rv) + ")";
      break;
    case CKR_FUNCTION_FAILED:
      message =
          call + std::string(" on token ") + quoted +
          " failed (CKR_FUNCTION_FAILED); without PIN files dojangd asks through pinentry, which needs a "
          "display or terminal (see dojangd's log)";
      break;
    default:
      message = call + std::string(" on token ") + quoted + " failed: " + ckRvName(rv);
      break;
  }
  throw CommandError(kExitFailure, message, std::move(details));
}

// Ends the SO's login however `unblock` leaves.
class SoLogin final {
 public:
  SoLogin(CK_FUNCTION_LIST* functions, CK_SESSION_HANDLE session)
      : m_functions(functions), m_session(session) {}
  SoLogin(const SoLogin&) = delete;
  SoLogin& operator=(const SoLogin&) = delete;
  ~SoLogin() { m_functions->C_Logout(m_session); }

 private:
  CK_FUNCTION_LIST* m_functions;
  CK_SESSION_HANDLE m_session;
};

}  // namespace

CommandResult runPinStatus(const PinOptions& options) {
  return withModule(options.module, [&](const Pkcs11Library& library) {
    const auto daemon = daemonSlots(library);
    nlohmann::json tokens = nlohmann::json::array();
    Table table({"SLOT", "LABEL", "PIN MODE", "USER PIN", "SO PIN"});
    for (const auto& token : initialisedTokens(library, options.token)) {
      const CK_TOKEN_INFO info = library.tokenInfo(token.slot);
      const auto reports = reportsFor(library, token.slot, daemon);
      const char* mode = isPromptMode(info.flags) ? "prompt" : "application";
      tokens.push_back({{"slot", token.slot},
                        {"label", token.label},
                        {"serial", paddedText(info.serialNumber)},
                        {"mode", mode},
                        {"exactCounts", daemon.contains(token.slot)},
                        {"userPin", pinJson(reports.user)},
                        {"soPin", pinJson(reports.so)}});
      table.addRow(
          {std::to_string(token.slot), token.label,
           std::string(mode) + (isPromptMode(info.flags) ? " (dojangd asks)" : " (the program asks)"),
           describePin(reports.user, true), describePin(reports.so, false)});
    }
    CommandResult result;
    result.json = {{"module", library.path()}, {"tokens", tokens}};
    result.text = table.render();
    return result;
  });
}

CommandResult runPinChange(const PinOptions& options) {
  requireBoth(options.pinFile, "--pin-file", options.newPinFile, "--new-pin-file");
  std::optional<SecureBytes> oldPin;
  std::optional<SecureBytes> newPin;
  if (options.pinFile) {
    oldPin.emplace(readPinFile(*options.pinFile));
    newPin.emplace(readPinFile(*options.newPinFile, "new PIN"));
  }
  return withModule(options.module, [&](const Pkcs11Library& library) {
    const auto token = chooseToken(library, options.token);
    const Session session(library, token.slot, true);
    // Without files both PINs are empty: dojangd asks for the current one, then the new one twice.
    const CK_RV rv = library.functions()->C_SetPIN(session.handle(), pinPointer(oldPin), pinLength(oldPin),
                                                   pinPointer(newPin), pinLength(newPin));
    if (rv != CKR_OK) {
      failPinCall(library, token, rv,
                  rv == CKR_PIN_LEN_RANGE || rv == CKR_PIN_INVALID ? PinRole::NewPin : PinRole::CurrentPin,
                  "C_SetPIN");
    }
    CommandResult result;
    result.json = {
        {"token", token.label}, {"slot", token.slot}, {"changed", true}, {"fromFiles", oldPin.has_value()}};
    result.text = "Changed the PIN of token \"" + token.label + "\".\n";
    return result;
  });
}

CommandResult runPinUnblock(const PinOptions& options) {
  requireBoth(options.pukFile, "--puk-file", options.newPinFile, "--new-pin-file");
  std::optional<SecureBytes> puk;
  std::optional<SecureBytes> newPin;
  if (options.pukFile) {
    puk.emplace(readPinFile(*options.pukFile, "PUK"));
    newPin.emplace(readPinFile(*options.newPinFile, "new PIN"));
  }
  return withModule(options.module, [&](const Pkcs11Library& library) {
    const auto token = chooseToken(library, options.token);
    const Session session(library, token.slot, true);
    auto* functions = library.functions();
    // Without files: a NULL PIN, and dojangd asks for the PUK / SO PIN.
    CK_RV rv = functions->C_Login(session.handle(), CKU_SO, pinPointer(puk), pinLength(puk));
    if (rv != CKR_OK) {
      failPinCall(library, token, rv, PinRole::SoPin, "C_Login(CKU_SO)");
    }
    const SoLogin login(functions, session.handle());
    // Without files an empty PIN: dojangd asks for the new PIN, twice.
    rv = functions->C_InitPIN(session.handle(), pinPointer(newPin), pinLength(newPin));
    if (rv != CKR_OK) {
      failPinCall(library, token, rv, PinRole::NewPin, "C_InitPIN");
    }
    CommandResult result;
    result.json = {
        {"token", token.label}, {"slot", token.slot}, {"unblocked", true}, {"fromFiles", puk.has_value()}};
    result.text = "Unblocked token \"" + token.label + "\": its PIN is the new one, with every try back.\n";
    return result;
  });
}

}  // namespace dojang::cli
