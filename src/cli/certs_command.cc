// `dojang certs`: every certificate object on every token, understood (src/pki). Certificates
// are public objects, so no login is needed.
#include <chrono>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "src/cli/commands.h"
#include "src/cli/module_command.h"
#include "src/cli/table.h"
#include "src/common/cryptoki/padded_text.h"
#include "src/common/errors/error.h"
#include "src/pki/certificate_summary.h"
#include "src/renewal/journal/journal.h"

namespace dojang::cli {

namespace {

enum class KeyPresence { Present, PublicKeyFound, Unknown, Absent };

const char* keyPresenceJson(KeyPresence presence) {
  switch (presence) {
    case KeyPresence::Present:
      return "present";
    case KeyPresence::PublicKeyFound:
      return "public-key-found";
    case KeyPresence::Unknown:
      return "unknown";
    case KeyPresence::Absent:
      return "absent";
  }
  return "unknown";
}

const char* keyPresenceText(KeyPresence presence) {
  switch (presence) {
    case KeyPresence::Present:
      return "yes";
    case KeyPresence::PublicKeyFound:
      return "hidden until login (public key found)";
    case KeyPresence::Unknown:
      return "unknown (login to check)";
    case KeyPresence::Absent:
      return "no";
  }
  return "unknown";
}

// Applications pair a certificate with its key by CKA_ID (an empty CKA_ID pairs with nothing).
// Without a login a private key is usually invisible, so a public key with the same CKA_ID is
// the next best evidence; if neither shows, only a login can tell.
KeyPresence findKey(const Session& session, const Bytes& id, bool loginRequired) {
  if (id.empty()) {
    return KeyPresence::Absent;
  }
  AttributeTemplate privateKeys;
  privateKeys.add(CKA_CLASS, CKO_PRIVATE_KEY).add(CKA_ID, id);
  if (!session.find(privateKeys).empty()) {
    return KeyPresence::Present;
  }
  AttributeTemplate publicKeys;
  publicKeys.add(CKA_CLASS, CKO_PUBLIC_KEY).add(CKA_ID, id);
  if (!session.find(publicKeys).empty()) {
    return KeyPresence::PublicKeyFound;
  }
  return loginRequired ? KeyPresence::Unknown : KeyPresence::Absent;
}

std::string text(const std::optional<Bytes>& value) {
  return value ? std::string(value->begin(), value->end()) : std::string();
}

std::string dateOnly(const std::string& iso) { return iso.substr(0, 10); }

// Appends one token's certificates to the JSON list and the table.
void listCertificates(const Pkcs11Library& library, CK_SLOT_ID slot, const CK_TOKEN_INFO& info,
                      const CertsOptions& options, std::chrono::system_clock::time_point now,
                      const std::set<std::string>& renewed, nlohmann::json& certificates, Table& table) {
  const std::string tokenLabel = paddedText(info.label);
  const std::string tokenSerial = paddedText(info.serialNumber);
  Session session(library, slot);
  AttributeTemplate query;
  query.add(CKA_CLASS, CKO_CERTIFICATE);
  for (const CK_OBJECT_HANDLE object : session.find(query)) {
    const std::string label = text(session.attribute(object, CKA_LABEL));
    const Bytes id = session.attribute(object, CKA_ID).value_or(Bytes{});
    const auto certificateType = session.ulongAttribute(object, CKA_CERTIFICATE_TYPE);
    nlohmann::json entry{{"slot", slot}, {"token", tokenLabel}, {"label", label}, {"id", hex(id)}};
    const auto value = session.attribute(object, CKA_VALUE);
    std::optional<pki::CertificateSummary> summary;
    std::string problem;
    if (certificateType && *certificateType != CKC_X_509) {
      problem = "not an X.509 certificate";
    } else if (!value || value->empty()) {
      problem = "certificate value not readable";
    } else {
      try {
        summary = pki::summarizeCertificate(*value, now);
      } catch (const dojang::Error& error) {
        problem = std::string("unreadable certificate: ") + error.what();
      }
    }
    if (!summary) {
      if (options.expiringDays) {
        continue;  // cannot say when it expires
      }
      entry["error"] = problem;
      table.addRow({tokenLabel, label, hex(id), "-", "-", "-", "-", "-", "-", problem});
      certificates.push_back(std::move(entry));
      continue;
    }
    if (options.expiringDays && summary->daysLeft > *options.expiringDays) {
      continue;
    }
    const KeyPresence key = findKey(session, id, (info.flags & CKF_LOGIN_REQUIRED) != 0);
    const std::string typeKo = summary->koreanPolicy ? pki::koreanLabel(*summary->koreanPolicy) : "";
    entry["subject"] = summary->subject;
    entry["commonName"] = summary->commonName;
    entry["issuer"] = summary->issuer;
    entry["serial"] = summary->serialHex;
    entry["keyAlgorithm"] = summary->keyAlgorithm;
    entry["notBefore"] = summary->notBefore;
    entry["notAfter"] = summary->notAfter;
    entry["daysLeft"] = summary->daysLeft;
    // A certificate the journal says was renewed is the old one, kept until its pair is deleted.
    const bool wasRenewed = renewed.count(tokenSerial + "/" + hex(id)) > 0;
    const std::string advice = wasRenewed ? "renewed" : std::string(pki::renewalAdviceText(summary->renewal));
    entry["renewal"] = advice;
    entry["policyOid"] = summary->policyOid.empty() ? nlohmann::json(nullptr) : nlohmann::json(summary->policyOid);
    if (summary->koreanPolicy) {
      entry["koreanType"] = typeKo;
      entry["koreanTypeEnglish"] = pki::englishLabel(*summary->koreanPolicy);
      entry["ca"] = std::string(summary->koreanPolicy->brand);
    } else {
      entry["koreanType"] = nullptr;
    }
    entry["privateKey"] = keyPresenceJson(key);
    entry["sha256Fingerprint"] = summary->sha256Fingerprint;
    table.addRow({tokenLabel, label, hex(id), typeKo.empty() ? "-" : typeKo, summary->keyAlgorithm,
                  dateOnly(summary->notAfter), std::to_string(summary->daysLeft),
                  advice, keyPresenceText(key),
                  summary->subject, summary->issuer, summary->serialHex});
    certificates.push_back(std::move(entry));
  }
}

// The certificates ("<token serial>/<CKA_ID hex>") that the renewal journal says were renewed.
// Read only if the journal exists: listing certificates creates no state.
std::set<std::string> renewedCertificates() {
  std::set<std::string> renewed;
  const auto path = renewal::Journal::defaultPath();
  std::error_code error;
  if (!std::filesystem::exists(path, error)) {
    return renewed;
  }
  try {
    renewal::Journal journal(path);
    for (const auto& record : journal.history(1000)) {
      if (record.step == renewal::RenewalStep::Retired && record.plan.kind != "enroll") {
        renewed.insert(record.plan.certificateKey);
      }
    }
  } catch (const dojang::Error&) {
    // An unreadable journal only costs the "renewed" marks.
  }
  return renewed;
}

}  // namespace

CommandResult runCerts(const CertsOptions& options) {
  return withModule(options.module, [&options](const Pkcs11Library& library) {
    const auto now = std::chrono::system_clock::now();
    const auto renewed = renewedCertificates();
    nlohmann::json certificates = nlohmann::json::array();
    nlohmann::json problems = nlohmann::json::array();
    std::string warnings;
    Table table({"TOKEN", "LABEL", "ID", "TYPE", "KEY", "NOT AFTER", "DAYS", "RENEWAL",
                 "PRIVATE KEY", "SUBJECT", "ISSUER", "SERIAL"});
    std::vector<std::string> labelsSeen;
    bool tokenMatched = false;
    for (const CK_SLOT_ID slot : library.slots(true)) {
      const CK_TOKEN_INFO info = library.tokenInfo(slot);
      const std::string tokenLabel = paddedText(info.label);
      labelsSeen.push_back(tokenLabel);
      if (options.token && *options.token != tokenLabel) {
        continue;
      }
      tokenMatched = true;
      if ((info.flags & CKF_TOKEN_INITIALIZED) == 0) {
        continue;
      }
      try {
        listCertificates(library, slot, info, options, now, renewed, certificates, table);
      } catch (const dojang::Error& error) {
        // One unreadable token must not hide the others' certificates.
        problems.push_back({{"slot", slot}, {"token", tokenLabel}, {"error", error.what()}});
        warnings += "warning: token \"" + tokenLabel + "\" (slot " + std::to_string(slot) +
                    "): " + error.what() + "\n";
      }
    }
    if (options.token && !tokenMatched) {
      // A misspelt label must not read as "this token holds no certificates".
      std::string known;
      for (const auto& label : labelsSeen) {
        known += (known.empty() ? "" : ", ") + ("\"" + label + "\"");
      }
      throw CommandError(kExitFailure,
                         "no token labelled \"" + *options.token + "\" (tokens present: " +
                             (known.empty() ? "none" : known) + ")",
                         {{"token", *options.token}, {"tokensPresent", labelsSeen}});
    }
    CommandResult result;
    result.json = {{"module", library.path()}, {"certificates", certificates}};
    if (!problems.empty()) {
      result.json["errors"] = problems;
    }
    if (table.empty()) {
      result.text = options.expiringDays
                        ? "No certificates expire within " + std::to_string(*options.expiringDays) + " days.\n"
                        : "No certificates found.\n";
    } else {
      result.text = table.render();
    }
    result.text += warnings;
    return result;
  });
}

}  // namespace dojang::cli
