// The CA's durable state in one SQLite file: issued certificates, reference codes, revocations
// and the fee ledger. Callers group writes in a Transaction so a rejected request writes nothing.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "src/common/sqlite/sqlite.h"

namespace dojang::ca {

struct CertificateRecord final {
  std::string serial;  // upper-case hex
  std::string subject; // RFC 2253 text, for people
  std::vector<unsigned char> subjectDer;  // for exact matching
  std::string profile;
  int64_t notBefore = 0;  // seconds since the epoch
  int64_t notAfter = 0;
  std::string subjectKeyId;  // hex of the SKI extension; CMP senderKID of signed requests
  std::vector<unsigned char> der;
  int64_t issuedAt = 0;
  std::string origin;  // "issue", "renewal" or "reissue"
  std::optional<std::string> replaces;  // serial of the certificate renewed or reissued
  std::optional<int64_t> revokedAt;
  std::optional<int64_t> revocationReason;  // CRLReason code
};

struct EnrolmentCode final {
  std::string reference;  // 참조번호, the CMP senderKID
  std::string secret;     // 인가코드, the CMP MAC secret (needed in clear to compute the MAC)
  std::string profile;
  std::string subject;
  std::vector<unsigned char> subjectDer;
  int64_t createdAt = 0;
  int64_t expiresAt = 0;
  std::optional<int64_t> usedAt;
  std::optional<std::string> usedBySerial;
  std::optional<std::string> reissueOf;  // serial to revoke when the code is used
};

struct LedgerEntry final {
  int64_t id = 0;
  int64_t at = 0;
  std::string serial;
  std::string profile;
  int64_t amountKrw = 0;
  std::string kind;  // "issue" or "renewal"
};

struct RevokedEntry final {
  std::string serial;
  int64_t revokedAt = 0;
  int64_t reason = 0;
};

class CaStore final {
 public:
  explicit CaStore(const std::string& path);

  [[nodiscard]] sqlite::Transaction begin() { return sqlite::Transaction(m_database); }

  void insertCode(const EnrolmentCode& code);
  [[nodiscard]] std::optional<EnrolmentCode> findCode(const std::string& reference);
  void markCodeUsed(const std::string& reference, const std::string& serial, int64_t at);

  void insertCertificate(const CertificateRecord& record);
  [[nodiscard]] std::optional<CertificateRecord> findBySerial(const std::string& serial);
  [[nodiscard]] std::optional<CertificateRecord> findBySubjectKeyId(const std::string& hex);
  // The newest unrevoked certificate of that subject and profile.
  [[nodiscard]] std::optional<CertificateRecord> findCurrent(const std::vector<unsigned char>& subjectDer,
                                                             const std::string& profile);
  // The newest certificate of that subject and profile, revoked or not.
  [[nodiscard]] std::optional<CertificateRecord> findLatest(const std::vector<unsigned char>& subjectDer,
                                                            const std::string& profile);
  // The certificate that renewed or reissued `serial`, if any.
  [[nodiscard]] std::optional<CertificateRecord> findSuccessor(const std::string& serial);
  [[nodiscard]] std::vector<CertificateRecord> listCertificates();
  // False when the serial is unknown or already revoked.
  bool revoke(const std::string& serial, int64_t at, int64_t reason);
  [[nodiscard]] std::vector<RevokedEntry> revoked();

  void addLedgerEntry(const LedgerEntry& entry);
  [[nodiscard]] std::vector<LedgerEntry> ledger();

  [[nodiscard]] int64_t nextCrlNumber();

 private:
  sqlite::Database m_database;
};

}  // namespace dojang::ca
