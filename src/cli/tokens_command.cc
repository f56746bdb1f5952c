// `dojang tokens`: one row per slot that holds a token.
#include <string>
#include <vector>

#include "src/cli/commands.h"
#include "src/cli/module_command.h"
#include "src/cli/table.h"
#include "src/common/cryptoki/padded_text.h"
#include "src/common/cryptoki/token_model.h"
#include "src/common/errors/error.h"

namespace dojang::cli {

namespace {

nlohmann::json flagsJson(CK_FLAGS flags) {
  return {
      {"tokenInitialized", (flags & CKF_TOKEN_INITIALIZED) != 0},
      {"loginRequired", (flags & CKF_LOGIN_REQUIRED) != 0},
      {"pinInitialized", (flags & CKF_USER_PIN_INITIALIZED) != 0},
      {"pinCountLow", (flags & CKF_USER_PIN_COUNT_LOW) != 0},
      {"pinFinalTry", (flags & CKF_USER_PIN_FINAL_TRY) != 0},
      {"pinLocked", (flags & CKF_USER_PIN_LOCKED) != 0},
      {"protectedAuthenticationPath", (flags & CKF_PROTECTED_AUTHENTICATION_PATH) != 0},
      {"writeProtected", (flags & CKF_WRITE_PROTECTED) != 0},
  };
}

std::string flagsText(CK_FLAGS flags) {
  std::vector<std::string> words;
  if ((flags & CKF_TOKEN_INITIALIZED) == 0) {
    words.emplace_back("not initialised");
  }
  if ((flags & CKF_LOGIN_REQUIRED) != 0) {
    words.emplace_back("login required");
  }
  words.emplace_back((flags & CKF_USER_PIN_INITIALIZED) != 0 ? "PIN set" : "PIN not set");
  if ((flags & CKF_USER_PIN_LOCKED) != 0) {
    words.emplace_back("PIN LOCKED");
  } else if ((flags & CKF_USER_PIN_FINAL_TRY) != 0) {
    words.emplace_back("PIN final try");
  } else if ((flags & CKF_USER_PIN_COUNT_LOW) != 0) {
    words.emplace_back("PIN count low");
  }
  if ((flags & CKF_PROTECTED_AUTHENTICATION_PATH) != 0) {
    words.emplace_back("PIN pad");
  }
  if ((flags & CKF_WRITE_PROTECTED) != 0) {
    words.emplace_back("read-only");
  }
  std::string text;
  for (const auto& word : words) {
    text += (text.empty() ? "" : ", ") + word;
  }
  return text;
}

std::size_t countCertificates(const Pkcs11Library& library, CK_SLOT_ID slot) {
  Session session(library, slot);
  AttributeTemplate certificates;
  certificates.add(CKA_CLASS, CKO_CERTIFICATE);
  return session.find(certificates).size();
}

}  // namespace

CommandResult runTokens(const ModuleOptions& options) {
  return withModule(options, [](const Pkcs11Library& library) {
    nlohmann::json tokens = nlohmann::json::array();
    Table table({"SLOT", "LABEL", "MANUFACTURER", "MODEL", "SERIAL", "FLAGS", "CERTS"});
    std::string warnings;
    for (const CK_SLOT_ID slot : library.slots(true)) {
      const CK_SLOT_INFO slotInfo = library.slotInfo(slot);
      const CK_TOKEN_INFO info = library.tokenInfo(slot);
      nlohmann::json entry{
          {"slot", slot},
          {"slotDescription", paddedText(slotInfo.slotDescription)},
          {"label", paddedText(info.label)},
          {"manufacturer", paddedText(info.manufacturerID)},
          {"model", paddedText(info.model)},
          {"serial", paddedText(info.serialNumber)},
          {"flags", flagsJson(info.flags)},
      };
      std::string certCount = "-";
      if ((info.flags & CKF_TOKEN_INITIALIZED) == 0) {
        // An uninitialised token (SoftHSM's spare slot, a blank card) holds nothing yet.
        entry["certificates"] = 0;
      } else {
        try {
          const auto count = countCertificates(library, slot);
          entry["certificates"] = count;
          certCount = std::to_string(count);
        } catch (const dojang::Error& error) {
          // One unreadable token must not hide the others.
          entry["certificates"] = nullptr;
          entry["error"] = error.what();
          certCount = "? (" + ckRvName(error.rv()) + ")";
        }
      }
      if (hasDefaultManagementKey(paddedText(info.model))) {
        entry["defaultManagementKey"] = true;
        warnings += "Warning: slot " + std::to_string(slot) + " (" + paddedText(info.label) +
                    ") still has the well-known default PIV management key: anyone can replace its keys "
                    "and certificates. Set a new one and name it in dojangd.toml ([[piv.card]] "
                    "management_key_file).\n";
      }
      table.addRow({std::to_string(slot), paddedText(info.label), paddedText(info.manufacturerID),
                    paddedText(info.model), paddedText(info.serialNumber), flagsText(info.flags),
                    certCount});
      tokens.push_back(std::move(entry));
    }
    CommandResult result;
    result.json = {{"module", library.path()}, {"tokens", tokens}};
    result.text = table.empty() ? "No tokens found (module " + library.path() + ").\n" : table.render() + warnings;
    return result;
  });
}

}  // namespace dojang::cli
