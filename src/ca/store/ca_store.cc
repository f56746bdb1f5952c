#include "src/ca/store/ca_store.h"

#include "src/common/errors/error.h"

namespace dojang::ca {
namespace {

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS certificates (
  serial TEXT PRIMARY KEY,
  subject TEXT NOT NULL,
  subject_der BLOB NOT NULL,
  profile TEXT NOT NULL,
  not_before INTEGER NOT NULL,
  not_after INTEGER NOT NULL,
  subject_key_id TEXT NOT NULL,
  der BLOB NOT NULL,
  issued_at INTEGER NOT NULL,
  origin TEXT NOT NULL,
  replaces TEXT,
  revoked_at INTEGER,
  revocation_reason INTEGER
);
CREATE INDEX IF NOT EXISTS certificates_by_ski ON certificates(subject_key_id);
CREATE INDEX IF NOT EXISTS certificates_by_subject ON certificates(subject_der, profile);
CREATE TABLE IF NOT EXISTS enrolment_codes (
  reference TEXT PRIMARY KEY,
  secret TEXT NOT NULL,
  profile TEXT NOT NULL,
  subject TEXT NOT NULL,
  subject_der BLOB NOT NULL,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  used_at INTEGER,
  used_by_serial TEXT,
  reissue_of TEXT
);
CREATE TABLE IF NOT EXISTS ledger (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  at INTEGER NOT NULL,
  serial TEXT NOT NULL,
  profile TEXT NOT NULL,
  amount_krw INTEGER NOT NULL,
  kind TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
  name TEXT PRIMARY KEY,
  value INTEGER NOT NULL
);
)sql";

constexpr const char* kCertificateColumns =
    "serial, subject, subject_der, profile, not_before, not_after, subject_key_id, der, issued_at, "
    "origin, replaces, revoked_at, revocation_reason";

CertificateRecord readCertificate(const sqlite::Statement& row) {
  CertificateRecord record;
  record.serial = row.text(0);
  record.subject = row.text(1);
  record.subjectDer = row.blob(2);
  record.profile = row.text(3);
  record.notBefore = row.integer(4);
  record.notAfter = row.integer(5);
  record.subjectKeyId = row.text(6);
  record.der = row.blob(7);
  record.issuedAt = row.integer(8);
  record.origin = row.text(9);
  record.replaces = row.optionalText(10);
  record.revokedAt = row.optionalInteger(11);
  record.revocationReason = row.optionalInteger(12);
  return record;
}

std::optional<CertificateRecord> firstCertificate(sqlite::Statement& statement) {
  if (!statement.step()) {
    return std::nullopt;
  }
  return readCertificate(statement);
}

}  // namespace

CaStore::CaStore(const std::string& path) : m_database(path) { m_database.execute(kSchema); }

void CaStore::insertCode(const EnrolmentCode& code) {
  sqlite::Statement statement(m_database,
                      "INSERT INTO enrolment_codes (reference, secret, profile, subject, subject_der, "
                      "created_at, expires_at, used_at, used_by_serial, reissue_of) "
                      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)");
  statement.bind(1, code.reference).bind(2, code.secret).bind(3, code.profile).bind(4, code.subject);
  statement.bindBlob(5, code.subjectDer).bind(6, code.createdAt).bind(7, code.expiresAt);
  statement.bind(8, code.usedAt).bind(9, code.usedBySerial).bind(10, code.reissueOf);
  statement.run();
}

std::optional<EnrolmentCode> CaStore::findCode(const std::string& reference) {
  sqlite::Statement statement(m_database,
                      "SELECT reference, secret, profile, subject, subject_der, created_at, expires_at, "
                      "used_at, used_by_serial, reissue_of FROM enrolment_codes WHERE reference = ?1");
  statement.bind(1, reference);
  if (!statement.step()) {
    return std::nullopt;
  }
  EnrolmentCode code;
  code.reference = statement.text(0);
  code.secret = statement.text(1);
  code.profile = statement.text(2);
  code.subject = statement.text(3);
  code.subjectDer = statement.blob(4);
  code.createdAt = statement.integer(5);
  code.expiresAt = statement.integer(6);
  code.usedAt = statement.optionalInteger(7);
  code.usedBySerial = statement.optionalText(8);
  code.reissueOf = statement.optionalText(9);
  return code;
}

void CaStore::markCodeUsed(const std::string& reference, const std::string& serial, int64_t at) {
  sqlite::Statement statement(m_database,
                      "UPDATE enrolment_codes SET used_at = ?2, used_by_serial = ?3 "
                      "WHERE reference = ?1 AND used_at IS NULL");
  statement.bind(1, reference).bind(2, at).bind(3, serial);
  statement.run();
  if (m_database.changes() != 1) {
    throw Error(CKR_FUNCTION_FAILED, ErrorKind::Refused,
                "reference number " + reference + " was used concurrently");
  }
}

void CaStore::insertCertificate(const CertificateRecord& record) {
  sqlite::Statement statement(m_database, std::string("INSERT INTO certificates (") + kCertificateColumns +
                                      ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)");
  statement.bind(1, record.serial).bind(2, record.subject).bindBlob(3, record.subjectDer);
  statement.bind(4, record.profile).bind(5, record.notBefore).bind(6, record.notAfter);
  statement.bind(7, record.subjectKeyId).bindBlob(8, record.der).bind(9, record.issuedAt);
  statement.bind(10, record.origin).bind(11, record.replaces).bind(12, record.revokedAt);
  statement.bind(13, record.revocationReason);
  statement.run();
}

std::optional<CertificateRecord> CaStore::findBySerial(const std::string& serial) {
  sqlite::Statement statement(m_database, std::string("SELECT ") + kCertificateColumns +
                                      " FROM certificates WHERE serial = ?1");
  statement.bind(1, serial);
  return firstCertificate(statement);
}

std::optional<CertificateRecord> CaStore::findBySubjectKeyId(const std::string& hex) {
  sqlite::Statement statement(m_database, std::string("SELECT ") + kCertificateColumns +
                                      " FROM certificates WHERE subject_key_id = ?1 "
                                      "ORDER BY issued_at DESC LIMIT 1");
  statement.bind(1, hex);
  return firstCertificate(statement);
}

std::optional<CertificateRecord> CaStore::findCurrent(const std::vector<unsigned char>& subjectDer,
                                                      const std::string& profile) {
  sqlite::Statement statement(m_database, std::string("SELECT ") + kCertificateColumns +
                                      " FROM certificates WHERE subject_der = ?1 AND profile = ?2 "
                                      "AND revoked_at IS NULL ORDER BY not_after DESC LIMIT 1");
  statement.bindBlob(1, subjectDer).bind(2, profile);
  return firstCertificate(statement);
}

std::optional<CertificateRecord> CaStore::findLatest(const std::vector<unsigned char>& subjectDer,
                                                     const std::string& profile) {
  sqlite::Statement statement(m_database, std::string("SELECT ") + kCertificateColumns +
                                      " FROM certificates WHERE subject_der = ?1 AND profile = ?2 "
                                      "ORDER BY not_after DESC, issued_at DESC LIMIT 1");
  statement.bindBlob(1, subjectDer).bind(2, profile);
  return firstCertificate(statement);
}

std::optional<CertificateRecord> CaStore::findSuccessor(const std::string& serial) {
  sqlite::Statement statement(m_database, std::string("SELECT ") + kCertificateColumns +
                                      " FROM certificates WHERE replaces = ?1 ORDER BY issued_at LIMIT 1");
  statement.bind(1, serial);
  return firstCertificate(statement);
}

std::vector<CertificateRecord> CaStore::listCertificates() {
  sqlite::Statement statement(m_database, std::string("SELECT ") + kCertificateColumns +
                                      " FROM certificates ORDER BY issued_at, rowid");
  std::vector<CertificateRecord> records;
  while (statement.step()) {
    records.push_back(readCertificate(statement));
  }
  return records;
}

bool CaStore::revoke(const std::string& serial, int64_t at, int64_t reason) {
  sqlite::Statement statement(m_database,
                      "UPDATE certificates SET revoked_at = ?2, revocation_reason = ?3 "
                      "WHERE serial = ?1 AND revoked_at IS NULL");
  statement.bind(1, serial).bind(2, at).bind(3, reason);
  statement.run();
  return m_database.changes() == 1;
}

std::vector<RevokedEntry> CaStore::revoked() {
  sqlite::Statement statement(m_database,
                      "SELECT serial, revoked_at, revocation_reason FROM certificates "
                      "WHERE revoked_at IS NOT NULL ORDER BY revoked_at, serial");
  std::vector<RevokedEntry> entries;
  while (statement.step()) {
    entries.push_back({statement.text(0), statement.integer(1), statement.integer(2)});
  }
  return entries;
}

void CaStore::addLedgerEntry(const LedgerEntry& entry) {
  sqlite::Statement statement(m_database,
                      "INSERT INTO ledger (at, serial, profile, amount_krw, kind) VALUES (?1, ?2, ?3, ?4, ?5)");
  statement.bind(1, entry.at).bind(2, entry.serial).bind(3, entry.profile).bind(4, entry.amountKrw);
  statement.bind(5, entry.kind);
  statement.run();
}

std::vector<LedgerEntry> CaStore::ledger() {
  sqlite::Statement statement(m_database,
                      "SELECT id, at, serial, profile, amount_krw, kind FROM ledger ORDER BY id");
  std::vector<LedgerEntry> entries;
  while (statement.step()) {
    entries.push_back({statement.integer(0), statement.integer(1), statement.text(2), statement.text(3),
                       statement.integer(4), statement.text(5)});
  }
  return entries;
}

int64_t CaStore::nextCrlNumber() {
  sqlite::Transaction transaction(m_database);
  sqlite::Statement bump(m_database,
                 "INSERT INTO counters (name, value) VALUES ('crl_number', 1) "
                 "ON CONFLICT(name) DO UPDATE SET value = value + 1");
  bump.run();
  sqlite::Statement read(m_database, "SELECT value FROM counters WHERE name = 'crl_number'");
  read.step();
  int64_t number = read.integer(0);
  transaction.commit();
  return number;
}

}  // namespace dojang::ca
