// What `dojang renew`, `enroll` and `reissue` say to people, in English or Korean: the guide's
// four steps, the prompts, the result, and the renewal failures a user meets. `--lang ko`, or a
// Korean locale (LC_ALL, LC_MESSAGES, LANG = ko_*), picks Korean.
#pragma once

#include <optional>
#include <string>

#include "src/common/errors/error.h"
#include "src/renewal/engine/renewal_engine.h"

namespace dojang::cli {

enum class Language { English, Korean };

// --lang (en or ko) if given, else the locale. Throws CommandError (usage) for another value.
[[nodiscard]] Language chooseLanguage(const std::optional<std::string>& flag);

// "[1/4] 인증서 선택 — choose the certificate" (English keeps the Korean names of the steps).
[[nodiscard]] std::string stepTitle(Language language, int step);
[[nodiscard]] std::string chooseCertificatePrompt(Language language, std::size_t count);
[[nodiscard]] std::string pinPrompt(Language language, const std::string& tokenLabel);
[[nodiscard]] std::string feeQuestion(Language language, const ca::Profile& profile);
// The result of a renewal, enrolment or reissue. `verb` is "Renewed", "Enrolled" or "Reissued".
[[nodiscard]] std::string resultText(Language language, const std::string& verb,
                                     const renewal::RenewalResult& outcome, const std::string& type,
                                     const std::string& tokenLabel, const std::string& journal);
// A failure as the person should read it: renewal problems and wrong PINs in their language,
// anything else as it is.
[[nodiscard]] std::string describeError(Language language, const Error& error);

}  // namespace dojang::cli
