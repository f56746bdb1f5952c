#include "src/cli/messages.h"

#include <cstdlib>
#include <map>

#include "src/ca/profiles/profile.h"
#include "src/cli/commands.h"

namespace dojang::cli {

namespace {

bool isKoreanLocale() {
  for (const char* variable : {"LC_ALL", "LC_MESSAGES", "LANG"}) {
    const char* value = std::getenv(variable);
    if (value != nullptr && *value != '\0') {
      return std::string(value).rfind("ko", 0) == 0;  // the first one set decides, as in POSIX
    }
  }
  return false;
}

// "4,400원" from "4400".
std::string won(const std::string& amount) {
  try {
    const std::string grouped = ca::formatKrw(std::stoll(amount));
    return grouped.substr(0, grouped.size() - 4) + "원";  // "4,400 KRW" -> "4,400원"
  } catch (const std::exception&) {
    return amount + "원";
  }
}

std::string fact(const std::map<std::string, std::string>& facts, const std::string& name) {
  const auto it = facts.find(name);
  return it == facts.end() ? std::string() : it->second;
}

std::string koreanProblem(const renewal::RenewalError& error) {
  const auto& facts = error.facts();
  const auto support = fact(facts, "support");
  const std::string help = support.empty() ? "" : " (문의: " + support + ")";
  switch (error.problem()) {
    case renewal::RenewalProblem::TooEarly:
      return "아직 갱신할 수 없습니다: \"" + fact(facts, "label") + "\" 인증서는 " + fact(facts, "opens") +
             "부터 갱신할 수 있습니다 (만료일 " + fact(facts, "expires") + "의 " +
             fact(facts, "window_days") + "일 전).";
    case renewal::RenewalProblem::Expired:
      return "\"" + fact(facts, "label") + "\" 인증서는 " + fact(facts, "expired") +
             "에 만료되어 갱신할 수 없습니다. `dojang reissue`로 재발급 받으세요." + help;
    case renewal::RenewalProblem::FeeMismatch:
      return fact(facts, "type") + "의 수수료는 " + won(fact(facts, "fee")) + "입니다. --accept-fee " +
             fact(facts, "offered") + "와(과) 달라 아무것도 만들지 않았습니다.";
    case renewal::RenewalProblem::FeeDeclined:
      return "수수료 " + won(fact(facts, "fee")) + "을 승인하지 않아 아무것도 만들지 않았습니다.";
    case renewal::RenewalProblem::Busy:
      return "\"" + fact(facts, "label") + "\" 인증서의 다른 갱신이 진행 중입니다. 잠시 후 다시 시도하세요.";
    case renewal::RenewalProblem::AlreadyFinished:
      return "중단되었던 \"" + fact(facts, "label") + "\" 인증서의 갱신(기록 #" + fact(facts, "journal") +
             ")을 마쳤습니다. 새 인증서가 저장되어 더 갱신할 것이 없습니다.";
    case renewal::RenewalProblem::WrongCertificate:
      return std::string("인증기관이 보낸 인증서가 확인을 통과하지 못해 받지 않았습니다: ") + error.what();
    case renewal::RenewalProblem::RequestFailed:
      return "갱신에 실패했습니다. 기존 인증서와 키는 그대로입니다: " + fact(facts, "detail") + help;
    case renewal::RenewalProblem::NotInstalled:
      return "인증기관이 새 인증서를 발급했지만(기록 #" + fact(facts, "journal") +
             ") 아직 토큰에 저장하지 못했습니다: " + fact(facts, "detail") +
             ". 기존 인증서와 키는 계속 쓸 수 있고, 토큰이 돌아오면 `dojang renew --recover`가 마무리합니다.";
  }
  return error.what();
}

}  // namespace

Language chooseLanguage(const std::optional<std::string>& flag) {
  if (flag) {
    if (*flag == "ko") {
      return Language::Korean;
    }
    if (*flag == "en") {
      return Language::English;
    }
    throw CommandError(kExitUsage, "--lang " + *flag + ": use en or ko");
  }
  return isKoreanLocale() ? Language::Korean : Language::English;
}

std::string stepTitle(Language language, int step) {
  static constexpr const char* kKorean[] = {"인증서 선택", "인증서 암호 입력", "수수료 결제", "갱신 완료"};
  static constexpr const char* kEnglish[] = {"choose the certificate", "the token PIN", "the fee",
                                             "the result"};
  const int index = step - 1;
  std::string title = "[" + std::to_string(step) + "/4] " + kKorean[index];
  if (language == Language::English) {
    title += std::string(" — ") + kEnglish[index];
  }
  return title;
}

std::string chooseCertificatePrompt(Language language, std::size_t count) {
  const std::string range = "[1-" + std::to_string(count) + "]: ";
  return language == Language::Korean ? "갱신할 인증서의 번호를 고르세요 " + range
                                      : "Renew which one? " + range;
}

std::string pinPrompt(Language language, const std::string& tokenLabel) {
  return language == Language::Korean ? "토큰 \"" + tokenLabel + "\"의 PIN: "
                                      : "PIN for token \"" + tokenLabel + "\": ";
}

std::string feeQuestion(Language language, const ca::Profile& profile) {
  if (language == Language::Korean) {
    return profile.brand + " " + profile.type + ": 연 " + won(std::to_string(profile.feeKrw)) +
           ". 결제하고 갱신할까요? [y/N]: ";
  }
  return profile.brand + " " + profile.type + ": " + ca::formatFee(profile.feeKrw) +
         " per year. Pay and renew? [y/N]: ";
}

std::string resultText(Language language, const std::string& verb, const renewal::RenewalResult& outcome,
                       const std::string& type, const std::string& tokenLabel, const std::string& journal) {
  if (language == Language::Korean) {
    const std::map<std::string, std::string> verbs = {
        {"Renewed", "갱신되었습니다"}, {"Enrolled", "발급되었습니다"}, {"Reissued", "재발급되었습니다"}};
    const auto it = verbs.find(verb);
    return (it != verbs.end() ? it->second : verb) + ": \"" + outcome.oldLabel + "\" (" + type +
           "), 토큰 \"" + tokenLabel + "\"\n  유효기간: " + outcome.notBefore + " ~ " + outcome.notAfter +
           "\n  일련번호: " + outcome.newSerialHex + "\n  새 키: CKA_ID " + outcome.newKeyIdHex + " (" +
           outcome.keyType + ", 토큰에서 생성)\n  기존 키: " + outcome.oldPair +
           "\n  수수료: " + (outcome.feeKrw > 0 ? won(std::to_string(outcome.feeKrw)) : std::string("무료")) +
           "\n  기록: #" + std::to_string(outcome.journalId) + " (" + journal + ")\n";
  }
  return verb + " \"" + outcome.oldLabel + "\" (" + type + ") on token \"" + tokenLabel +
         "\"\n  valid from " + outcome.notBefore + " until " + outcome.notAfter + "\n  serial " +
         outcome.newSerialHex + "\n  new key: CKA_ID " + outcome.newKeyIdHex + " (" + outcome.keyType +
         ", generated on the token)\n  old pair: " + outcome.oldPair +
         "\n  fee: " + ca::formatFee(outcome.feeKrw) + "\n  journal: #" + std::to_string(outcome.journalId) +
         " in " + journal + "\n";
}

std::string describeError(Language language, const Error& error) {
  if (language == Language::English) {
    return error.what();
  }
  if (const auto* problem = dynamic_cast<const renewal::RenewalError*>(&error)) {
    return koreanProblem(*problem);
  }
  if (error.kind() == ErrorKind::PinIncorrect) {
    return std::string("PIN이 틀렸습니다. 자동으로 다시 시도하지 않습니다. (") + error.what() + ")";
  }
  if (error.kind() == ErrorKind::PinLocked) {
    return std::string("PIN이 잠겼습니다. 토큰의 관리 도구로 잠금을 풀어야 합니다. (") + error.what() + ")";
  }
  return error.what();
}

}  // namespace dojang::cli
