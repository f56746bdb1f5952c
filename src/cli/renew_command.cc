// `dojang renew [CERT]`: the user guide's four steps (choose the certificate, the token PIN, the
// fee, the result) around the renewal engine (src/renewal/engine). Prompts go to the terminal on
// stderr; the result is the command's output (text or --json).
#include <termios.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>

#include "src/ca/profiles/profile.h"
#include "src/cli/commands.h"
#include "src/cli/messages.h"
#include "src/cli/module_command.h"
#include "src/cli/pin_files.h"
#include "src/cli/pin_report.h"
#include "src/cli/table.h"
#include "src/common/errors/error.h"
#include "src/pki/certificate_summary.h"
#include "src/renewal/config/renewal_config.h"
#include "src/renewal/engine/renewal_engine.h"
#include "src/renewal/journal/journal.h"

namespace dojang::cli {

namespace {

using renewal::RenewalCandidate;
using renewal::WindowState;

bool interactive(const RenewOptions& options) {
  return !options.autoMode && !options.json && ::isatty(STDIN_FILENO) == 1 && ::isatty(STDERR_FILENO) == 1;
}

void step(Language language, int number) {
  std::cerr << '\n' << stepTitle(language, number) << '\n';
}

const char* windowText(WindowState window) {
  switch (window) {
    case WindowState::Open:
      return "renew now";
    case WindowState::TooEarly:
      return "too early";
    case WindowState::Expired:
      return "expired: reissue";
  }
  return "";
}

std::string candidateTable(const std::vector<RenewalCandidate>& candidates) {
  Table table({"#", "CERTIFICATE", "TYPE", "HOLDER", "CA", "DAYS LEFT", "RENEWAL"});
  int number = 1;
  for (const auto& candidate : candidates) {
    table.addRow({std::to_string(number++), candidate.certificate.label, candidate.typeLabel,
                  candidate.summary.commonName,
                  candidate.profile ? candidate.profile->brand + " (" + candidate.profile->operatorName + ")"
                                    : candidate.summary.issuer,
                  std::to_string(candidate.summary.daysLeft), windowText(candidate.window)});
  }
  return table.render();
}

std::string readLineFromTerminal() {
  std::string line;
  if (!std::getline(std::cin, line)) {
    throw CommandError(kExitUsage, "no answer on the terminal");
  }
  return line;
}

// The PIN without echo: the terminal's echo is off while it is typed, and restored whatever happens.
SecureBytes readPinFromTerminal(Language language, const std::string& tokenLabel) {
  std::cerr << pinPrompt(language, tokenLabel) << std::flush;
  termios saved{};
  const bool haveTerminal = ::tcgetattr(STDIN_FILENO, &saved) == 0;
  if (haveTerminal) {
    termios quiet = saved;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    (void)::tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
  }
  std::string pin;
  const bool read = static_cast<bool>(std::getline(std::cin, pin));
  if (haveTerminal) {
    (void)::tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
  }
  std::cerr << '\n';
  SecureBytes result(pin);
  std::fill(pin.begin(), pin.end(), '\0');
  if (!read || result.empty()) {
    throw CommandError(kExitUsage, "no PIN was typed");
  }
  return result;
}

// The PIN for the token in `slot`: none when dojangd asks for it itself (the token is in prompt
// mode and no PIN was given here): the engine then logs in with a NULL PIN and dojangd's pinentry
// asks, naming this program. --auto never has a prompt: dojangd's scheduler runs it unattended.
SecureBytes pinFor(const Pkcs11Library& library, CK_SLOT_ID slot, const RenewOptions& options,
                   Language language, const std::string& tokenLabel);

SecureBytes readPin(const RenewOptions& options, Language language, const std::string& tokenLabel) {
  if (options.pinFile) {
    return readPinFile(*options.pinFile);
  }
  if (options.pinStdin) {
    return readPinFromStream(std::cin, "standard input");
  }
  if (!interactive(options)) {
    throw CommandError(kExitUsage, "no PIN: use --pin-file FILE or --pin-stdin when not on a terminal");
  }
  return readPinFromTerminal(language, tokenLabel);
}

SecureBytes pinFor(const Pkcs11Library& library, CK_SLOT_ID slot, const RenewOptions& options,
                   Language language, const std::string& tokenLabel) {
  if (isPromptMode(library.tokenInfo(slot).flags) && !options.pinFile && !options.pinStdin &&
      !options.autoMode) {
    if (interactive(options)) {
      std::cerr << (language == Language::Korean ? "PIN은 dojangd가 묻습니다 (pinentry).\n"
                                                 : "dojangd asks for the PIN (pinentry).\n");
    }
    return {};
  }
  return readPin(options, language, tokenLabel);
}

std::string defaultProfilesPath() {
  for (const char* candidate : {DOJANG_PROFILES_INSTALLED, DOJANG_PROFILES_SOURCE}) {
    if (std::ifstream(candidate).good()) {
      return candidate;
    }
  }
  return DOJANG_PROFILES_INSTALLED;
}

// The engine's settings from renewal.toml, the flags, and the default paths.
renewal::EngineSettings engineSettings(const RenewOptions& options) {
  auto config = renewal::loadRenewalConfig(options.config ? std::filesystem::path(*options.config)
                                                          : renewal::defaultConfigPath());
  renewal::EngineSettings settings;
  settings.ca = config.ca(options.ca.value_or(""));
  if (options.caUrl) {
    renewal::setCaUrl(settings.ca, *options.caUrl);
  }
  if (options.caTrusted) {
    settings.ca.trustedFile = *options.caTrusted;
  }
  settings.profiles =
      ca::loadProfiles(settings.ca.profilesFile.empty() ? defaultProfilesPath() : settings.ca.profilesFile);
  settings.journalPath =
      options.journal ? std::filesystem::path(*options.journal) : renewal::Journal::defaultPath();
  settings.retireDays = config.retireDays;
  return settings;
}

nlohmann::json resultJson(const renewal::RenewalResult& outcome, const std::string& type,
                          const std::string& tokenLabel, const std::filesystem::path& journal) {
  return {{"label", outcome.oldLabel},
          {"type", type},
          {"token", tokenLabel},
          {"serial", outcome.newSerialHex},
          {"not_before", outcome.notBefore},
          {"not_after", outcome.notAfter},
          {"key_id", outcome.newKeyIdHex},
          {"key_type", outcome.keyType},
          {"old_pair", outcome.oldPair},
          {"fee_krw", outcome.feeKrw},
          {"journal_id", outcome.journalId},
          {"journal", journal.string()},
          {"timings_ms",
           {{"keygen", outcome.timings.keygen},
            {"cmp", outcome.timings.cmp},
            {"verify", outcome.timings.verify},
            {"token_writes", outcome.timings.tokenWrites}}}};
}

}  // namespace

// `dojang renew --history`: the journal's newest renewals, each with its steps.
CommandResult journalHistory(const std::filesystem::path& path) {
  renewal::Journal journal(path);
  CommandResult result;
  result.json = nlohmann::json::array();
  Table table({"#", "CERTIFICATE", "KIND", "STEP", "STARTED", "TOKEN", "LAST ERROR"});
  const auto timeText = [](std::int64_t seconds) {
    return pki::formatIso8601Utc(std::chrono::system_clock::time_point(std::chrono::seconds(seconds)));
  };
  for (const auto& record : journal.history(20)) {
    nlohmann::json events = nlohmann::json::array();
    for (const auto& event : record.events) {
      events.push_back(
          {{"step", renewal::toString(event.step)}, {"at", timeText(event.at)}, {"note", event.note}});
    }
    result.json.push_back({{"id", record.id},
                           {"certificate", record.plan.oldLabel},
                           {"kind", record.plan.kind},
                           {"step", renewal::toString(record.step)},
                           {"token", record.plan.tokenLabel},
                           {"key_type", record.plan.keyType},
                           {"started", timeText(record.startedAt)},
                           {"last_error", record.lastError.value_or("")},
                           {"events", events}});
    table.addRow({std::to_string(record.id), record.plan.oldLabel, record.plan.kind,
                  std::string(renewal::toString(record.step)), timeText(record.startedAt),
                  record.plan.tokenLabel, record.lastError.value_or("")});
  }
  result.text = table.empty() ? "no renewals in " + path.string() + "\n" : table.render();
  return result;
}

CommandResult runRenew(const RenewOptions& options) {
  auto settings = engineSettings(options);
  if (options.history) {
    return journalHistory(settings.journalPath);
  }
  return withModule(options.module, [&](const Pkcs11Library& library) {
    settings.modulePath = library.path();
    renewal::RenewalEngine engine(*library.functions(), settings);
    const auto now = std::chrono::system_clock::now();
    const bool onTerminal = interactive(options);
    const Language language = chooseLanguage(options.lang);

    if (options.recover) {
      const auto tokens = renewal::tokensOf(*library.functions());
      const auto pin = readPin(options, language, tokens.empty() ? std::string("?") : tokens.front().label);
      const auto lines = engine.recoverUnfinished(pin);
      CommandResult result;
      result.json = {{"recovered", lines}};
      for (const auto& line : lines) {
        result.text += line + '\n';
      }
      if (lines.empty()) {
        result.text = "no interrupted renewal\n";
      }
      return result;
    }

    // Step 1: the certificate.
    const auto candidates = engine.candidates(now);
    const RenewalCandidate* chosen = nullptr;
    if (options.certificate) {
      chosen = &renewal::RenewalEngine::select(candidates, *options.certificate);
    } else {
      std::vector<RenewalCandidate> renewable;
      for (const auto& candidate : candidates) {
        if (candidate.window == WindowState::Open) {
          renewable.push_back(candidate);
        }
      }
      if (!onTerminal) {
        nlohmann::json list = nlohmann::json::array();
        for (const auto& candidate : renewable) {
          list.push_back({{"label", candidate.certificate.label},
                          {"serial", candidate.summary.serialHex},
                          {"type", candidate.typeLabel},
                          {"days_left", candidate.summary.daysLeft}});
        }
        throw CommandError(
            kExitUsage,
            "name the certificate to renew (a label, a serial or a pkcs11: URI); renewable now:\n" +
                candidateTable(renewable),
            {{"renewable", list}});
      }
      step(language, 1);
      if (renewable.empty()) {
        throw CommandError(kExitFailure, "no certificate can be renewed now:\n" + candidateTable(candidates));
      }
      std::cerr << candidateTable(renewable) << chooseCertificatePrompt(language, renewable.size())
                << std::flush;
      const auto answer = readLineFromTerminal();
      std::size_t index = 0;
      try {
        index = std::stoul(answer);
      } catch (const std::exception&) {
      }
      if (index < 1 || index > renewable.size()) {
        throw CommandError(kExitUsage,
                           "\"" + answer + "\" is not one of 1-" + std::to_string(renewable.size()));
      }
      // The same certificate in the full list (a label may hold characters a URI would need escaped).
      for (const auto& candidate : candidates) {
        if (candidate.certificateKey == renewable[index - 1].certificateKey) {
          chosen = &candidate;
        }
      }
    }

    // Step 2: the token PIN.
    if (onTerminal) {
      step(language, 2);
    }
    const auto pin = pinFor(library, chosen->token.slot, options, language, chosen->token.label);

    // Step 3: the fee (asked by the engine only when it is due).
    renewal::RenewalChoices choices;
    choices.acceptedFeeKrw = options.acceptFee;
    choices.deleteOld = options.deleteOld;
    if (options.keyType) {
      choices.keyType = renewal::KeySpec::fromName(*options.keyType);
      if (!choices.keyType) {
        throw CommandError(kExitUsage, "--key-type " + *options.keyType +
                                           ": use ec-p256, ec-p384, rsa-2048, rsa-3072 or rsa-4096");
      }
    }
    if (options.autoMode) {
      // Where a person would be asked, --auto fails with exit 2: the fee must come with --accept-fee.
      choices.confirmFee = [](const ca::Profile& profile) -> bool {
        throw CommandError(kExitUsage, "the fee of " + ca::formatFee(profile.feeKrw) +
                                           " needs --accept-fee with --auto; nothing was generated");
      };
    } else if (onTerminal) {
      choices.confirmFee = [&](const ca::Profile& profile) {
        step(language, 3);
        std::cerr << feeQuestion(language, profile) << std::flush;
        const auto answer = readLineFromTerminal();
        return answer == "y" || answer == "Y" || answer == "yes";
      };
    }
    const auto outcome = [&] {
      try {
        return engine.renew(*chosen, pin, choices, now);
      } catch (const Error& error) {
        // dojangd's scheduler retries what is retryable (the CA unreachable, the lock taken).
        throw CommandError(kExitFailure, describeError(language, error),
                           {{"retryable", error.kind() == ErrorKind::Retryable}});
      }
    }();

    // Step 4: the result.
    if (onTerminal) {
      step(language, 4);
    }
    CommandResult result;
    result.json = resultJson(outcome, chosen->typeLabel, chosen->token.label, settings.journalPath);
    result.json["renewed"] = outcome.oldLabel;
    result.text = resultText(language, "Renewed", outcome, chosen->typeLabel, chosen->token.label,
                             settings.journalPath.string());
    return result;
  });
}

CommandResult runEnroll(const EnrollOptions& options) {
  const auto& common = options.common;
  auto settings = engineSettings(common);
  const Language language = chooseLanguage(common.lang);
  return withModule(common.module, [&](const Pkcs11Library& library) {
    settings.modulePath = library.path();
    renewal::RenewalEngine engine(*library.functions(), settings);
    const auto now = std::chrono::system_clock::now();
    // A reissue may name the certificate it replaces (still on the token, expired or revoked):
    // that pair is retired at the end, and the token is its token.
    std::vector<renewal::RenewalCandidate> candidates;
    const renewal::RenewalCandidate* replacing = nullptr;
    if (options.reissue && options.replacing) {
      candidates = engine.candidates(now);
      replacing = &renewal::RenewalEngine::select(candidates, *options.replacing);
    }
    const auto tokens = renewal::tokensOf(*library.functions());
    std::vector<renewal::TokenIdentity> matching;
    for (const auto& token : tokens) {
      if (replacing != nullptr ? token.serial == replacing->token.serial
                               : (!options.token || token.label == *options.token)) {
        matching.push_back(token);
      }
    }
    if (matching.size() != 1) {
      std::string known;
      for (const auto& token : tokens) {
        known += (known.empty() ? "" : ", ") + ("\"" + token.label + "\"");
      }
      throw CommandError(kExitUsage,
                         std::string(matching.empty() ? "no token" : "more than one token") +
                             (options.token ? " is labelled \"" + *options.token + "\"" : " is present") +
                             "; name one with --token (tokens: " + (known.empty() ? "none" : known) + ")");
    }
    renewal::Enrolment enrolment;
    enrolment.reference = options.reference;
    enrolment.label = options.label;
    enrolment.acceptedFeeKrw = common.acceptFee;
    enrolment.keyType =
        replacing != nullptr ? renewal::keySpecOfCertificate(replacing->certificate.der) : renewal::KeySpec{};
    if (common.keyType) {
      const auto spec = renewal::KeySpec::fromName(*common.keyType);
      if (!spec) {
        throw CommandError(kExitUsage,
                           "--key-type " + *common.keyType + ": use ec-p256, ec-p384 or rsa-2048");
      }
      enrolment.keyType = *spec;
    }
    if (options.code) {
      enrolment.authorizationCode = SecureBytes(*options.code);
    } else if (interactive(common)) {
      std::cerr << "Authorization code (인가코드) for reference number " << options.reference << ": "
                << std::flush;
      enrolment.authorizationCode = SecureBytes(readLineFromTerminal());
    } else {
      throw CommandError(kExitUsage, "no authorization code: give --code");
    }
    const auto pin = pinFor(library, matching.front().slot, common, language, matching.front().label);
    const auto outcome = [&] {
      try {
        return options.reissue ? engine.reissue(matching.front(), pin, enrolment, replacing, now)
                               : engine.enroll(matching.front(), pin, enrolment, now);
      } catch (const Error& error) {
        throw CommandError(kExitFailure, describeError(language, error),
                           {{"retryable", error.kind() == ErrorKind::Retryable}});
      }
    }();
    CommandResult result;
    result.json = resultJson(outcome, outcome.typeLabel, matching.front().label, settings.journalPath);
    result.json[options.reissue ? "reissued" : "enrolled"] = outcome.oldLabel;
    result.text = resultText(language, options.reissue ? "Reissued" : "Enrolled", outcome, outcome.typeLabel,
                             matching.front().label, settings.journalPath.string());
    return result;
  });
}

}  // namespace dojang::cli
