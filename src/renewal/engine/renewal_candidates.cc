// RenewalEngine::candidates and select: which certificates there are, which CA profile and renewal
// window each has, and CERT as a person names it.
#include <algorithm>
#include <cctype>
#include <filesystem>
#include <string_view>

#include "src/common/cryptoki/hex_text.h"
#include "src/common/errors/error.h"
#include "src/renewal/engine/renewal_engine.h"
#include "src/renewal/journal/journal.h"

namespace dojang::renewal {

namespace {

std::string lowercase(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return std::tolower(c); });
  return text;
}

// RFC 7512 percent-decoding of one pkcs11: URI attribute value.
std::string percentDecoded(std::string_view value) {
  std::string out;
  for (std::size_t i = 0; i < value.size(); ++i) {
    if (value[i] == '%' && i + 2 < value.size()) {
      const std::string digits(value.substr(i + 1, 2));
      if (digits.size() == 2 && std::isxdigit(static_cast<unsigned char>(digits[0])) != 0 &&
          std::isxdigit(static_cast<unsigned char>(digits[1])) != 0) {
        out += static_cast<char>(std::stoi(digits, nullptr, 16));
        i += 2;
        continue;
      }
    }
    out += value[i];
  }
  return out;
}

[[noreturn]] void badName(const std::string& message) {
  throw Error(CKR_ARGUMENTS_BAD, ErrorKind::BadInput, message);
}

}  // namespace

std::string supportLine(const ca::Profile& profile) {
  if (!profile.support) {
    return "";
  }
  std::string line = profile.operatorName + " 고객센터 " + profile.support->phone;
  if (!profile.support->hours.empty()) {
    line += ", " + profile.support->hours;
  }
  return line;
}

RenewalEngine::RenewalEngine(CK_FUNCTION_LIST& functions, EngineSettings settings)
    : m_functions(functions), m_settings(std::move(settings)) {}

std::vector<RenewalCandidate> RenewalEngine::candidates(std::chrono::system_clock::time_point now) const {
  // While a renewal is unfinished its certificate is shown as before it: the new certificate (stored
  // but not yet installed) is no candidate of its own, and the old one keeps its label even when
  // already relabelled "retired". A crash after storing leaves two certificates with the old label;
  // this way naming it finds the old one, whose renewal renew() then finishes.
  std::vector<RenewalRecord> unfinished;
  if (std::filesystem::exists(m_settings.journalPath)) {
    unfinished = Journal(m_settings.journalPath).unfinished();
  }
  std::vector<RenewalCandidate> result;
  for (const auto& token : tokensOf(m_functions)) {
    RenewalToken session(m_functions, token);
    for (auto& certificate : session.certificates()) {
      const auto renewing = [&](const Bytes RenewalPlan::*keyId) {
        return std::find_if(unfinished.begin(), unfinished.end(), [&](const RenewalRecord& record) {
          return record.plan.tokenSerial == token.serial && !certificate.id.empty() &&
                 record.plan.*keyId == certificate.id;
        });
      };
      if (renewing(&RenewalPlan::newKeyId) != unfinished.end()) {
        continue;
      }
      if (const auto old = renewing(&RenewalPlan::oldKeyId); old != unfinished.end()) {
        certificate.label = old->plan.oldLabel;
      }
      RenewalCandidate candidate;
      try {
        candidate.summary = pki::summarizeCertificate(certificate.der, now);
      } catch (const Error&) {
        continue;  // not X.509: nothing to renew
      }
      candidate.token = token;
      candidate.certificateKey = token.serial + "/" + hexText(certificate.id);
      for (const auto& profile : m_settings.profiles.profiles) {
        if (!candidate.summary.policyOid.empty() && profile.policyOid == candidate.summary.policyOid) {
          candidate.profile = profile;
          break;
        }
      }
      if (candidate.summary.koreanPolicy) {
        candidate.typeLabel = pki::koreanLabel(*candidate.summary.koreanPolicy);
      } else if (candidate.profile) {
        candidate.typeLabel = candidate.profile->brand + " " + candidate.profile->type;
      } else {
        candidate.typeLabel = "certificate";
      }
      const auto windowDays = std::chrono::hours(24) * m_settings.profiles.renewalWindowDays;
      candidate.windowOpens = candidate.summary.notAfterTime - windowDays;
      if (now >= candidate.summary.notAfterTime) {
        candidate.window = WindowState::Expired;
      } else if (now >= candidate.windowOpens) {
        candidate.window = WindowState::Open;
      } else {
        candidate.window = WindowState::TooEarly;
      }
      candidate.certificate = std::move(certificate);
      result.push_back(std::move(candidate));
    }
  }
  return result;
}

const RenewalCandidate& RenewalEngine::select(const std::vector<RenewalCandidate>& candidates,
                                              const std::string& name) {
  std::vector<const RenewalCandidate*> matches;
  if (name.rfind("pkcs11:", 0) == 0) {
    // pkcs11:token=...;object=...;id=%01%02;serial=...: every attribute given must match.
    std::string_view path(name);
    path.remove_prefix(7);
    path = path.substr(0, path.find('?'));
    std::optional<std::string> token, object, id, serial;
    while (!path.empty()) {
      const auto end = path.find(';');
      const auto part = path.substr(0, end);
      const auto equals = part.find('=');
      if (equals != std::string_view::npos) {
        const std::string key(part.substr(0, equals));
        std::string value = percentDecoded(part.substr(equals + 1));
        if (key == "token") {
          token = value;
        } else if (key == "object") {
          object = value;
        } else if (key == "id") {
          id = hexText(Bytes(value.begin(), value.end()));
        } else if (key == "serial") {
          serial = value;
        }
      }
      path = end == std::string_view::npos ? std::string_view{} : path.substr(end + 1);
    }
    for (const auto& candidate : candidates) {
      if ((!token || candidate.token.label == *token) && (!serial || candidate.token.serial == *serial) &&
          (!object || candidate.certificate.label == *object) &&
          (!id || hexText(candidate.certificate.id) == *id)) {
        matches.push_back(&candidate);
      }
    }
  } else {
    for (const auto& candidate : candidates) {
      if (candidate.certificate.label == name || lowercase(candidate.summary.serialHex) == lowercase(name)) {
        matches.push_back(&candidate);
      }
    }
  }
  if (matches.size() == 1) {
    return *matches.front();
  }
  std::string known;
  for (const auto& candidate : candidates) {
    known += (known.empty() ? "" : ", ") +
             ("\"" + candidate.certificate.label + "\" (serial " + candidate.summary.serialHex + ")");
  }
  if (matches.empty()) {
    badName("no certificate is named \"" + name + "\" (certificates: " + (known.empty() ? "none" : known) +
            ")");
  }
  badName("\"" + name + "\" names " + std::to_string(matches.size()) +
          " certificates; name one by its serial or a pkcs11: URI with id=");
}

}  // namespace dojang::renewal
