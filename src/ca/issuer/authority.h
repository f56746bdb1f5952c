// The CA's keys and certificates on disk, and the X.509 it builds with them: end-entity
// certificates with the Korean profile extensions, and CRLs.
#pragma once

#include <openssl/x509.h>

#include <cstdint>
#include <string>
#include <vector>

#include "src/ca/profiles/profile.h"
#include "src/ca/store/ca_store.h"
#include "src/common/ossl/owners.h"

namespace dojang::ca {

enum class KeyType { Rsa2048, EcP256 };

// Files inside the CA directory.
struct CaPaths final {
  explicit CaPaths(std::string directory);
  std::string directory;
  std::string caKey, caCert, cmpKey, cmpCert, database;
};

struct IssueOrder final {
  const X509_NAME* subject = nullptr;
  EVP_PKEY* publicKey = nullptr;
  const Profile* profile = nullptr;
  int64_t notBefore = 0;
  int64_t notAfter = 0;
  std::string crlUrl;  // CRL distribution point, on the CA's own HTTP server
};

struct IssuedCertificate final {
  X509Ptr certificate;
  CertificateRecord record;  // ready for CaStore::insertCertificate; origin/replaces left empty
};

class CertificateAuthority final {
 public:
  // Creates the directory's keys and certificates; refuses to overwrite an existing CA.
  static void initialise(const CaPaths& paths, KeyType keyType, const std::string& commonName);
  static CertificateAuthority load(const CaPaths& paths);

  [[nodiscard]] IssuedCertificate issue(const IssueOrder& order) const;
  [[nodiscard]] X509CrlPtr makeCrl(const std::vector<RevokedEntry>& revoked, int64_t crlNumber,
                                   int64_t now) const;

  [[nodiscard]] X509* caCertificate() const noexcept { return m_caCert.get(); }
  [[nodiscard]] X509* cmpCertificate() const noexcept { return m_cmpCert.get(); }
  [[nodiscard]] EVP_PKEY* cmpKey() const noexcept { return m_cmpKey.get(); }

 private:
  CertificateAuthority(PkeyPtr caKey, X509Ptr caCert, PkeyPtr cmpKey, X509Ptr cmpCert);

  PkeyPtr m_caKey;
  X509Ptr m_caCert;
  PkeyPtr m_cmpKey;
  X509Ptr m_cmpCert;
};

// Helpers shared with the CMP server and the CLI.
[[nodiscard]] std::string serialHex(const X509& certificate);
[[nodiscard]] std::string subjectKeyIdHex(const X509& certificate);
[[nodiscard]] std::string toHex(const unsigned char* bytes, size_t length);
[[nodiscard]] std::vector<unsigned char> certificateDer(const X509& certificate);
[[nodiscard]] X509Ptr certificateFromDer(const std::vector<unsigned char>& der);
[[nodiscard]] std::string certificatePem(const X509& certificate);
[[nodiscard]] std::string formatTime(int64_t seconds);  // "2025-06-01 12:00:00 UTC"
[[nodiscard]] std::string formatDate(int64_t seconds);  // "2025-06-01"

}  // namespace dojang::ca
