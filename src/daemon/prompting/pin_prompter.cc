#include "src/daemon/prompting/pin_prompter.h"

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <iterator>
#include <map>
#include <vector>

#include "src/common/errors/error.h"
#include "src/daemon/client.h"
#include "src/daemon/log.h"
#include "src/daemon/pinentry/pinentry.h"
#include "src/pki/certificate_summary.h"

namespace dojang::daemon {

namespace {

constexpr std::chrono::milliseconds kAliveTick{250};
constexpr std::size_t kMaxEnvironBytes = 1u << 20;  // more than any real environment

std::string readProcFile(pid_t pid, const char* name) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/" + name, std::ios::binary);
  std::string text;
  char buffer[4096];
  while (in && text.size() < kMaxEnvironBytes) {
    in.read(buffer, sizeof buffer);
    text.append(buffer, static_cast<std::size_t>(in.gcount()));
  }
  return text;
}

std::vector<std::string> nulSeparated(const std::string& text) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  while (start < text.size()) {
    const auto end = text.find('\0', start);
    parts.push_back(text.substr(start, end == std::string::npos ? std::string::npos : end - start));
    if (end == std::string::npos) {
      break;
    }
    start = end + 1;
  }
  return parts;
}

std::string linkTarget(const std::string& path) {
  std::error_code error;
  auto target = std::filesystem::read_symlink(path, error);
  return error ? std::string() : target.string();
}

bool isTerminalPath(const std::string& path) {
  return path.starts_with("/dev/pts/") || path.starts_with("/dev/tty");
}

bool isInterpreter(const std::string& name) {
  return name.starts_with("python") || name.starts_with("perl") || name == "sh" || name == "bash" ||
         name == "dash" || name == "node" || name.starts_with("ruby");
}

std::string operationKo(const std::string& operation) {
  static const std::map<std::string, std::string> kKorean = {
      {"sign", "서명"},
      {"decrypt", "복호화"},
      {"log in", "로그인"},
      {"log in as security officer", "관리자(SO) 로그인"},
      {"generate a key pair", "키 생성"},
      {"store a key", "키 저장"},
      {"store a private object", "개인 객체 저장"},
      {"copy a key", "키 복사"},
      {"change a key", "키 변경"},
      {"delete a key", "키 삭제"},
      {"store an object", "객체 저장"},
      {"delete an object", "객체 삭제"},
      {"change the PIN", "PIN 변경"},
      {"change the SO PIN", "SO PIN(PUK) 변경"},
      {"reset the PIN", "PIN 재설정"},
  };
  const auto it = kKorean.find(operation);
  return it == kKorean.end() ? operation : it->second;
}

}  // namespace

PromptSurface surfaceOfProcess(pid_t pid) {
  PromptSurface surface;
  if (pid <= 0) {
    return surface;
  }
  std::map<std::string, std::string> environment;
  for (const auto& entry : nulSeparated(readProcFile(pid, "environ"))) {
    if (const auto equals = entry.find('='); equals != std::string::npos) {
      environment.emplace(entry.substr(0, equals), entry.substr(equals + 1));
    }
  }
  const auto variable = [&](const char* name) {
    const auto it = environment.find(name);
    return it == environment.end() ? std::string() : it->second;
  };
  surface.display = variable("DISPLAY");
  surface.waylandDisplay = variable("WAYLAND_DISPLAY");
  surface.xauthority = variable("XAUTHORITY");
  surface.ttyType = variable("TERM");
  for (const char* locale : {"LC_ALL", "LC_CTYPE", "LANG"}) {
    if (surface.lcCtype = variable(locale); !surface.lcCtype.empty()) {
      break;
    }
  }
  surface.tty = variable("GPG_TTY");
  for (int fd = 0; fd <= 2 && surface.tty.empty(); ++fd) {
    const auto target = linkTarget("/proc/" + std::to_string(pid) + "/fd/" + std::to_string(fd));
    if (isTerminalPath(target)) {
      surface.tty = target;
    }
  }
  if (!surface.tty.empty() && surface.ttyType.empty()) {
    surface.ttyType = "xterm";
  }
  return surface;
}

std::string programOfProcess(pid_t pid, const std::string& fallback) {
  if (pid <= 0) {
    return fallback;
  }
  const auto exe = linkTarget("/proc/" + std::to_string(pid) + "/exe");
  if (exe.empty()) {
    return fallback;
  }
  auto name = std::filesystem::path(exe).filename().string();
  if (isInterpreter(name)) {
    const auto arguments = nulSeparated(readProcFile(pid, "cmdline"));
    for (std::size_t i = 1; i < arguments.size(); ++i) {
      if (!arguments[i].empty() && arguments[i][0] != '-') {
        name += " " + std::filesystem::path(arguments[i]).filename().string();
        break;
      }
    }
  }
  return name;
}

PromptText promptText(const std::string& program, pid_t pid, const PromptNeed& need,
                      const std::string& locale) {
  const bool korean = locale.starts_with("ko");
  std::string holder;
  std::string kind;
  if (!need.certificate.empty()) {
    try {
      const auto summary = pki::summarizeCertificate(need.certificate, std::chrono::system_clock::now());
      holder = summary.commonName.empty() ? summary.subject : summary.commonName;
      kind = summary.koreanPolicy ? pki::koreanLabel(*summary.koreanPolicy) : summary.keyAlgorithm;
    } catch (const Error&) {
      // A certificate dojang cannot read still leaves the program and the token to name.
    }
  }
  const std::string who = program + (pid > 0 ? " (pid " + std::to_string(pid) + ")" : std::string());
  const std::string as = holder.empty() ? std::string() : holder + (kind.empty() ? "" : " (" + kind + ")");
  const bool so = need.user == CKU_SO;
  PromptText text;
  text.title = "dojang";
  if (need.secret == PromptSecret::ManagementKey) {
    if (korean) {
      text.description =
          who + "이(가) 토큰 " + need.tokenLabel + "에서 " + operationKo(need.operation) +
          "하려고 합니다.\n이 카드의 관리 키(management key)는 기본값이 아니며 설정 파일에도 없습니다.\n"
          "16진수로 입력하십시오 (3DES는 48자리).";
      text.prompt = "관리 키";
    } else {
      text.description = who + " wants to " + need.operation + " on token " + need.tokenLabel +
                         ".\nThe card's management key is not the default one and is not in dojangd.toml.\n"
                         "Type it in hex (48 digits for 3DES).";
      text.prompt = "Management key:";
    }
    return text;
  }
  if (need.secret == PromptSecret::NewPin) {
    // No retries here: the new PIN is not checked against anything yet.
    if (korean) {
      text.description = who + "이(가) 토큰 " + need.tokenLabel + "에서 " + operationKo(need.operation) +
                         "하려고 합니다.\n새 " + (so ? "SO PIN" : "PIN") + "을 두 번 입력하십시오.";
      text.prompt = so ? "새 SO PIN" : "새 PIN";
      text.repeatError = "두 PIN이 다릅니다.";
    } else {
      text.description = who + " wants to " + need.operation + " of token " + need.tokenLabel +
                         ".\nType the new " + (so ? "SO PIN" : "PIN") + ", then once more to confirm it.";
      text.prompt = so ? "New SO PIN:" : "New PIN:";
      text.repeatError = "The PINs do not match.";
    }
    return text;
  }
  if (need.secret == PromptSecret::CurrentPin) {
    if (korean) {
      text.description = who + "이(가) 토큰 " + need.tokenLabel + "에서 " + operationKo(need.operation) +
                         "하려고 합니다.\n현재 " + (so ? "SO PIN" : "PIN") + "을 입력하십시오.";
      text.prompt = so ? "현재 SO PIN" : "현재 PIN";
    } else {
      text.description = who + " wants to " + need.operation + " of token " + need.tokenLabel +
                         ".\nType the current " + (so ? "SO PIN" : "PIN") + ".";
      text.prompt = so ? "Current SO PIN:" : "Current PIN:";
    }
  } else if (korean) {
    text.description = who + "이(가) " + (as.empty() ? "" : as + " 인증서로 ") + operationKo(need.operation) +
                       "하려고 합니다.\n토큰: " + need.tokenLabel;
    text.prompt = so ? "SO PIN" : "PIN";
  } else {
    text.description = who + " wants to " + need.operation + (as.empty() ? "" : " as " + as) +
                       ".\nToken: " + need.tokenLabel;
    text.prompt = so ? "SO PIN:" : "PIN:";
  }
  const auto& pin = need.pin;
  std::string retries;
  if (pin.finalTry || pin.retriesLeft == 1u) {
    retries = korean ? "마지막 시도입니다. PIN이 한 번 더 틀리면 토큰이 잠깁니다."
                     : "LAST TRY: one more wrong PIN locks the token.";
  } else if (pin.retriesLeft) {
    retries = korean ? "남은 시도 횟수: " + std::to_string(*pin.retriesLeft)
                     : std::to_string(*pin.retriesLeft) + " tries left.";
  }
  if (!retries.empty()) {
    text.description += "\n" + retries;
  }
  if (pin.countLow) {
    text.errorText = korean ? "이전에 틀린 PIN이 입력되었습니다." : "A wrong PIN was entered before.";
    if (pin.retriesLeft && !pin.finalTry) {
      text.errorText += " " + retries;
    }
  }
  return text;
}

SecureBytes PinPrompter::ask(const Client& client, const PromptNeed& need,
                             const std::function<bool()>& callAlive) const {
  const auto pid = static_cast<pid_t>(client.pid());
  const auto program = programOfProcess(pid, client.program());
  if ((need.secret == PromptSecret::Pin || need.secret == PromptSecret::CurrentPin) && need.pin.locked) {
    fail(CKR_PIN_LOCKED, need.user == CKU_SO
                             ? "the SO PIN (PUK) of token \"" + need.tokenLabel + "\" is locked"
                             : "the PIN of token \"" + need.tokenLabel +
                                   "\" is locked; unblock it with `dojang pin unblock`");
  }
  auto surface = surfaceOfProcess(pid);
  pinentry::PromptRequest request;
  request.program = m_settings.program;
  request.display =
      surface.display.empty() && surface.waylandDisplay.empty() ? m_settings.display : surface.display;
  request.waylandDisplay = surface.waylandDisplay;
  request.xauthority = surface.xauthority;
  request.tty = surface.tty.empty() ? m_settings.tty : surface.tty;
  request.ttyType = surface.ttyType.empty() ? "xterm" : surface.ttyType;
  request.lcCtype = surface.lcCtype;
  const auto text = promptText(program, pid, need, surface.lcCtype);
  request.title = text.title;
  request.description = text.description;
  request.prompt = text.prompt;
  request.errorText = text.errorText;
  request.repeat = need.secret == PromptSecret::NewPin;
  request.repeatError = text.repeatError;
  request.timeout = m_settings.timeout;
  const std::string about = "PIN prompt for " + program + " on token \"" + need.tokenLabel + "\"";
  if (!pinentry::hasSurface(request)) {
    // The call's failure is the one log line (the dispatcher logs it): nothing is started.
    fail(CKR_FUNCTION_FAILED,
         about + ": no display or terminal to ask on (the program has none; set [pin] display or tty)");
  }
  logInfo(about + " (" + need.operation + ")");
  pinentry::Prompt prompt(std::move(request));
  auto running = std::async(std::launch::async, [&prompt] { return prompt.run(); });
  bool canceled = false;
  while (running.wait_for(kAliveTick) != std::future_status::ready) {
    if (!canceled && !callAlive()) {
      canceled = true;
      prompt.cancel();  // the client left: nobody is waiting for this PIN any more
    }
  }
  auto result = running.get();
  switch (result.outcome) {
    case pinentry::PromptOutcome::Entered:
      return std::move(result.pin);
    case pinentry::PromptOutcome::Canceled:
      logInfo(about + (canceled ? ": cancelled, the client went away" : ": cancelled"));
      fail(CKR_FUNCTION_CANCELED, canceled ? "the client went away" : "the PIN prompt was cancelled");
    case pinentry::PromptOutcome::TimedOut:
      logInfo(about + ": no answer in " + std::to_string(m_settings.timeout.count()) + " s");
      fail(CKR_FUNCTION_FAILED, "no answer to the PIN prompt in time");
    case pinentry::PromptOutcome::Failed:
      break;
  }
  logWarning(about + ": " + result.detail);
  fail(CKR_FUNCTION_FAILED, "PIN prompt failed: " + result.detail);
}

}  // namespace dojang::daemon
