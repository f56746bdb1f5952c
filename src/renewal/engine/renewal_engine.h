// The renewal engine: one certificate on a token renewed in journalled steps. The new key pair is
// generated on the token (Keygen), the CA gets a CMP key update protected by the old key with the
// new key's proof of possession (Requested), the returned certificate is checked and journalled
// before it is confirmed (Issued), stored on the token under the new key's CKA_ID with the old
// label (Stored), and the old pair is relabelled, or deleted (Retired). A crash at any point is
// recovered at the next run: before Issued the pending key is deleted; from Issued on the renewal
// is finished. The old certificate and key stay usable until the new ones are stored.
//
// The engine is an application of dojang-pkcs11.so like any other: it runs in the `dojang` process
// (by hand, or as dojangd's child for automatic renewals), never inside dojangd, and no key bytes
// ever reach it.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "drivers/token/secure_bytes.h"
#include "src/ca/profiles/profile.h"
#include "src/common/cryptoki/cryptoki.h"
#include "src/common/errors/error.h"
#include "src/pki/certificate_summary.h"
#include "src/renewal/config/renewal_config.h"
#include "src/renewal/token/renewal_token.h"

namespace dojang::renewal {

enum class WindowState {
  TooEarly,  // more than the window's days before expiry: the CA would refuse
  Open,      // renew now
  Expired,   // renewal is no longer possible: a reissue is needed
};

// One certificate on one token, as a renewal sees it.
struct RenewalCandidate {
  TokenIdentity token;
  TokenCertificate certificate;
  pki::CertificateSummary summary;
  std::optional<ca::Profile> profile;  // the CA profile its policy OID names, if the catalogue has it
  std::string certificateKey;          // "<token serial>/<CKA_ID hex>": what the journal and lock name
  std::string typeLabel;               // "SignKorea 범용 개인", or the issuer's CN for unknown policies
  WindowState window = WindowState::TooEarly;
  std::chrono::system_clock::time_point windowOpens;
};

struct EngineSettings {
  std::string modulePath;  // dojang-pkcs11.so, loaded again by libp11 for token-backed EVP_PKEYs
  std::filesystem::path journalPath;
  CaConfig ca;
  ca::ProfileCatalog profiles;
  int retireDays = 30;
};

// What the person (or script) decided for this renewal.
struct RenewalChoices {
  std::optional<KeySpec> keyType;           // default: the old key's algorithm and size
  std::optional<long long> acceptedFeeKrw;  // --accept-fee; must equal the profile's fee
  // Asked when the profile is paid and no fee was accepted; false refuses the renewal.
  std::function<bool(const ca::Profile&)> confirmFee;
  bool deleteOld = false;
};

// Why a renewal was refused or failed, for the CLI to say in the person's language; the message
// (English) says it too.
enum class RenewalProblem {
  TooEarly,          // facts: label, opens, expires, window_days
  Expired,           // facts: label, expired
  FeeMismatch,       // facts: type, fee, offered
  FeeDeclined,       // facts: fee
  Busy,              // facts: label
  AlreadyFinished,   // facts: label, journal
  WrongCertificate,  // the CA's certificate failed a check; facts: none
  RequestFailed,     // nothing changed on the token; facts: detail
  NotInstalled,      // issued, not yet on the token; facts: journal, detail
};

class RenewalError final : public Error {
 public:
  RenewalError(CK_RV rv, ErrorKind kind, RenewalProblem problem, const std::string& message,
               std::map<std::string, std::string> facts,
               std::optional<unsigned> pinRetriesLeft = std::nullopt)
      : Error(rv, kind, message, pinRetriesLeft), m_problem(problem), m_facts(std::move(facts)) {}
  [[nodiscard]] RenewalProblem problem() const noexcept { return m_problem; }
  [[nodiscard]] const std::map<std::string, std::string>& facts() const noexcept { return m_facts; }

 private:
  RenewalProblem m_problem;
  std::map<std::string, std::string> m_facts;
};

// Where a renewal's time went (milliseconds), for `--json` and bench/renewal.sh.
struct RenewalTimings {
  double keygen = 0;       // C_GenerateKeyPair on the token
  double cmp = 0;          // the CMP transaction (request, answer, certConf), checks excluded
  double verify = 0;       // the checks of the issued certificate
  double tokenWrites = 0;  // storing the certificate, relabelling, deleting
};

struct RenewalResult {
  std::int64_t journalId = 0;
  std::string certificateKey;
  std::string newSerialHex;
  std::string notBefore;  // ISO 8601 UTC
  std::string notAfter;
  std::string newKeyIdHex;
  std::string keyType;  // "ec-p256", ...
  std::string oldPair;  // what happened to it, for people: "relabelled ..., deleted on DATE"
  std::string oldLabel;
  std::string typeLabel;  // "SignKorea 범용 개인", from the new certificate's policy
  long long feeKrw = 0;
  RenewalTimings timings;
};

// A first certificate for a token (`dojang enroll`): the CA's reference number and authorization
// code (참조번호, 인가코드) authenticate an ir for a key pair generated on the token.
struct Enrolment {
  std::string reference;
  SecureBytes authorizationCode;
  std::string label;  // of the new pair and certificate
  KeySpec keyType;
  std::optional<long long> acceptedFeeKrw;  // the fee acknowledgement sent with the request
};

class RenewalEngine final {
 public:
  // `functions` is the initialised dojang-pkcs11.so of this process.
  RenewalEngine(CK_FUNCTION_LIST& functions, EngineSettings settings);

  // Every certificate on every token, with its profile and renewal window.
  [[nodiscard]] std::vector<RenewalCandidate> candidates(std::chrono::system_clock::time_point now) const;
  // CERT as a person names it: a label, a serial (hex), or a pkcs11: URI (object=, id=, serial=,
  // token=). Throws dojang::Error(BadInput) naming what matched none, or several.
  [[nodiscard]] static const RenewalCandidate& select(const std::vector<RenewalCandidate>& candidates,
                                                      const std::string& name);

  // The whole renewal (see the header comment). Throws dojang::Error with a message for people:
  // the window, the fee, a wrong PIN (never retried), the CA's answer, a token gone.
  RenewalResult renew(const RenewalCandidate& candidate, const SecureBytes& pin,
                      const RenewalChoices& choices, std::chrono::system_clock::time_point now);

  // The whole enrolment, journalled like a renewal (kind "enroll", no old pair).
  RenewalResult enroll(const TokenIdentity& token, const SecureBytes& pin, const Enrolment& enrolment,
                       std::chrono::system_clock::time_point now);
  // 재발급: a new certificate for a lost, expired or revoked one, with a reissue reference code (the
  // CA revokes the old certificate and keeps its expiry). `replacing` is the old certificate when
  // it is still on the token: its pair is retired, and the new certificate must keep its subject
  // and expiry.
  RenewalResult reissue(const TokenIdentity& token, const SecureBytes& pin, const Enrolment& enrolment,
                        const RenewalCandidate* replacing, std::chrono::system_clock::time_point now);

  // Finishes or rolls back every interrupted renewal on the tokens present that `pin` opens;
  // returns one line per renewal it acted on.
  std::vector<std::string> recoverUnfinished(const SecureBytes& pin);

 private:
  // enroll and reissue: a new pair on the token and an ir authenticated by a reference code.
  RenewalResult issueWithCode(const std::string& kind, const TokenIdentity& token, const SecureBytes& pin,
                              const Enrolment& enrolment, const RenewalCandidate* replacing,
                              std::chrono::system_clock::time_point now);

  CK_FUNCTION_LIST& m_functions;
  EngineSettings m_settings;
};

// "the CA's support: 코스콤 고객센터 1577-7337, weekdays 08:00-19:00": for error messages.
[[nodiscard]] std::string supportLine(const ca::Profile& profile);

}  // namespace dojang::renewal
