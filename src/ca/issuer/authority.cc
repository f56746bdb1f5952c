#include "src/ca/issuer/authority.h"

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <ctime>
#include <filesystem>

#include "src/ca/issuer/subject_name.h"
#include "src/common/errors/foreign_errors.h"

namespace dojang::ca {
namespace {

constexpr int64_t kSecondsPerDay = 86400;
constexpr int kCaValidityDays = 3650;

PkeyPtr generateKey(KeyType keyType) {
  EVP_PKEY* key = keyType == KeyType::Rsa2048 ? EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{2048})
                                              : EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  return PkeyPtr(checkOpenssl(key, "generating a key"));
}

void writeFile(const std::string& path, const std::string& contents, mode_t mode) {
  BioPtr bio(checkOpenssl(BIO_new_file(path.c_str(), "wx"), ("creating " + path).c_str()));
  checkOpensslStatus(BIO_write(bio.get(), contents.data(), static_cast<int>(contents.size())) ==
                             static_cast<int>(contents.size()),
                     "writing " + path);
  bio.reset();
  ::chmod(path.c_str(), mode);
}

std::string privateKeyPem(EVP_PKEY* key) {
  BioPtr bio(checkOpenssl(BIO_new(BIO_s_mem()), "BIO_new"));
  checkOpensslStatus(PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr),
                     "PEM_write_bio_PrivateKey");
  char* data = nullptr;
  long length = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(length));
}

PkeyPtr readPrivateKey(const std::string& path) {
  BioPtr bio(checkOpenssl(BIO_new_file(path.c_str(), "r"), ("opening " + path).c_str()));
  return PkeyPtr(checkOpenssl(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr),
                              ("reading key " + path).c_str()));
}

X509Ptr readCertificate(const std::string& path) {
  BioPtr bio(checkOpenssl(BIO_new_file(path.c_str(), "r"), ("opening " + path).c_str()));
  return X509Ptr(checkOpenssl(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr),
                              ("reading certificate " + path).c_str()));
}

Asn1IntegerPtr randomSerial() {
  BignumPtr number(checkOpenssl(BN_new(), "BN_new"));
  // 127 random bits: positive, unique without a counter (CA/B forum asks for >= 64 bits).
  checkOpensslStatus(BN_rand(number.get(), 127, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ANY), "BN_rand");
  return Asn1IntegerPtr(checkOpenssl(BN_to_ASN1_INTEGER(number.get(), nullptr), "BN_to_ASN1_INTEGER"));
}

// Adds one extension written in OpenSSL's configuration syntax; OpenSSL encodes it.
void addExtension(X509* certificate, X509V3_CTX* context, int nid, const std::string& value) {
  X509ExtensionPtr extension(
      checkOpenssl(X509V3_EXT_conf_nid(nullptr, context, nid, value.c_str()),
                   ("building extension " + std::string(OBJ_nid2sn(nid)) + " = " + value).c_str()));
  checkOpensslStatus(X509_add_ext(certificate, extension.get(), -1), "X509_add_ext");
}

// certificatePolicies with one PolicyInformation and no qualifiers (the config-string form needs
// an OpenSSL config database, so build the structure and let OpenSSL encode it).
void addPolicy(X509* certificate, const std::string& policyOid) {
  CertificatePoliciesPtr policies(checkOpenssl(CERTIFICATEPOLICIES_new(), "CERTIFICATEPOLICIES_new"));
  POLICYINFO* info = checkOpenssl(POLICYINFO_new(), "POLICYINFO_new");
  if (sk_POLICYINFO_push(policies.get(), info) <= 0) {
    POLICYINFO_free(info);
    throwOpenssl("sk_POLICYINFO_push");
  }
  ASN1_OBJECT_free(info->policyid);
  info->policyid = checkOpenssl(OBJ_txt2obj(policyOid.c_str(), 1), ("policy OID " + policyOid).c_str());
  checkOpensslStatus(X509_add1_ext_i2d(certificate, NID_certificate_policies, policies.get(), 0, X509V3_ADD_DEFAULT),
                     "adding certificatePolicies");
}

X509Ptr buildCertificate(const X509_NAME* subject, EVP_PKEY* publicKey, const X509_NAME* issuerName,
                         int64_t notBefore, int64_t notAfter) {
  X509Ptr certificate(checkOpenssl(X509_new(), "X509_new"));
  checkOpensslStatus(X509_set_version(certificate.get(), X509_VERSION_3), "X509_set_version");
  Asn1IntegerPtr serial = randomSerial();
  checkOpensslStatus(X509_set_serialNumber(certificate.get(), serial.get()), "X509_set_serialNumber");
  checkOpensslStatus(X509_set_subject_name(certificate.get(), subject), "X509_set_subject_name");
  checkOpensslStatus(X509_set_issuer_name(certificate.get(), issuerName), "X509_set_issuer_name");
  checkOpenssl(ASN1_TIME_set(X509_getm_notBefore(certificate.get()), static_cast<time_t>(notBefore)),
               "setting notBefore");
  checkOpenssl(ASN1_TIME_set(X509_getm_notAfter(certificate.get()), static_cast<time_t>(notAfter)),
               "setting notAfter");
  checkOpensslStatus(X509_set_pubkey(certificate.get(), publicKey), "X509_set_pubkey");
  return certificate;
}

void sign(X509* certificate, EVP_PKEY* key) {
  if (X509_sign(certificate, key, EVP_sha256()) <= 0) {
    throwOpenssl("signing a certificate");
  }
}

}  // namespace

CaPaths::CaPaths(std::string dir)
    : directory(std::move(dir)),
      caKey(directory + "/ca.key.pem"),
      caCert(directory + "/ca.cert.pem"),
      cmpKey(directory + "/cmp.key.pem"),
      cmpCert(directory + "/cmp.cert.pem"),
      database(directory + "/ca.sqlite") {}

void CertificateAuthority::initialise(const CaPaths& paths, KeyType keyType, const std::string& commonName) {
  std::filesystem::create_directories(paths.directory);
  if (std::filesystem::exists(paths.caKey) || std::filesystem::exists(paths.caCert)) {
    throw Error(CKR_ARGUMENTS_BAD, ErrorKind::BadInput,
                "a CA already exists in " + paths.directory + "; refusing to overwrite it");
  }
  const int64_t now = std::time(nullptr);
  const int64_t notAfter = now + kCaValidityDays * kSecondsPerDay;

  PkeyPtr caKey = generateKey(keyType);
  X509NamePtr caName = parseSubject("cn=" + commonName + ",o=dojang,c=KR", "dojang");
  X509Ptr caCert = buildCertificate(caName.get(), caKey.get(), caName.get(), now - 60, notAfter);
  X509V3_CTX context;
  X509V3_set_ctx(&context, caCert.get(), caCert.get(), nullptr, nullptr, 0);
  addExtension(caCert.get(), &context, NID_basic_constraints, "critical,CA:TRUE");
  addExtension(caCert.get(), &context, NID_key_usage, "critical,keyCertSign,cRLSign,digitalSignature");
  addExtension(caCert.get(), &context, NID_subject_key_identifier, "hash");
  addExtension(caCert.get(), &context, NID_authority_key_identifier, "keyid:always");
  sign(caCert.get(), caKey.get());

  // A separate key protects CMP responses, so the CA key only signs certificates and CRLs.
  PkeyPtr cmpKey = generateKey(keyType);
  X509NamePtr cmpName = parseSubject("cn=dojang CMP Server,o=dojang,c=KR", "dojang");
  X509Ptr cmpCert = buildCertificate(cmpName.get(), cmpKey.get(), X509_get_subject_name(caCert.get()),
                                     now - 60, notAfter);
  X509V3_set_ctx(&context, caCert.get(), cmpCert.get(), nullptr, nullptr, 0);
  addExtension(cmpCert.get(), &context, NID_basic_constraints, "critical,CA:FALSE");
  addExtension(cmpCert.get(), &context, NID_key_usage, "critical,digitalSignature");
  addExtension(cmpCert.get(), &context, NID_subject_key_identifier, "hash");
  addExtension(cmpCert.get(), &context, NID_authority_key_identifier, "keyid:always");
  sign(cmpCert.get(), caKey.get());

  writeFile(paths.caKey, privateKeyPem(caKey.get()), 0600);
  writeFile(paths.cmpKey, privateKeyPem(cmpKey.get()), 0600);
  writeFile(paths.caCert, certificatePem(*caCert), 0644);
  writeFile(paths.cmpCert, certificatePem(*cmpCert), 0644);
  CaStore store(paths.database);  // creates the schema
  ::chmod(paths.database.c_str(), 0600);
}

CertificateAuthority CertificateAuthority::load(const CaPaths& paths) {
  if (!std::filesystem::exists(paths.caCert)) {
    throw Error(CKR_ARGUMENTS_BAD, ErrorKind::BadInput,
                "no CA in " + paths.directory + "; run `dojang-ca init --dir " + paths.directory + "` first");
  }
  return CertificateAuthority(readPrivateKey(paths.caKey), readCertificate(paths.caCert),
                              readPrivateKey(paths.cmpKey), readCertificate(paths.cmpCert));
}

CertificateAuthority::CertificateAuthority(PkeyPtr caKey, X509Ptr caCert, PkeyPtr cmpKey, X509Ptr cmpCert)
    : m_caKey(std::move(caKey)),
      m_caCert(std::move(caCert)),
      m_cmpKey(std::move(cmpKey)),
      m_cmpCert(std::move(cmpCert)) {}

IssuedCertificate CertificateAuthority::issue(const IssueOrder& order) const {
  X509Ptr certificate = buildCertificate(order.subject, order.publicKey, X509_get_subject_name(m_caCert.get()),
                                         order.notBefore,
                                         order.notAfter);
  X509V3_CTX context;
  X509V3_set_ctx(&context, m_caCert.get(), certificate.get(), nullptr, nullptr, 0);
  // The first (here only) certificatePolicies entry tells Korean relying parties the type.
  addPolicy(certificate.get(), order.profile->policyOid);
  addExtension(certificate.get(), &context, NID_key_usage, "critical,digitalSignature,nonRepudiation");
  addExtension(certificate.get(), &context, NID_subject_key_identifier, "hash");
  addExtension(certificate.get(), &context, NID_authority_key_identifier, "keyid:always");
  addExtension(certificate.get(), &context, NID_crl_distribution_points, "URI:" + order.crlUrl);
  sign(certificate.get(), m_caKey.get());

  IssuedCertificate issued;
  issued.record.serial = serialHex(*certificate);
  issued.record.subject = subjectText(*order.subject);
  issued.record.subjectDer = subjectDer(*order.subject);
  issued.record.profile = order.profile->id;
  issued.record.notBefore = order.notBefore;
  issued.record.notAfter = order.notAfter;
  issued.record.subjectKeyId = subjectKeyIdHex(*certificate);
  issued.record.der = certificateDer(*certificate);
  issued.certificate = std::move(certificate);
  return issued;
}

X509CrlPtr CertificateAuthority::makeCrl(const std::vector<RevokedEntry>& revoked, int64_t crlNumber,
                                         int64_t now) const {
  X509CrlPtr crl(checkOpenssl(X509_CRL_new(), "X509_CRL_new"));
  checkOpensslStatus(X509_CRL_set_version(crl.get(), X509_CRL_VERSION_2), "X509_CRL_set_version");
  checkOpensslStatus(X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(m_caCert.get())),
                     "X509_CRL_set_issuer_name");
  Asn1TimePtr lastUpdate(checkOpenssl(ASN1_TIME_set(nullptr, static_cast<time_t>(now)), "ASN1_TIME_set"));
  Asn1TimePtr nextUpdate(
      checkOpenssl(ASN1_TIME_set(nullptr, static_cast<time_t>(now + kSecondsPerDay)), "ASN1_TIME_set"));
  checkOpensslStatus(X509_CRL_set1_lastUpdate(crl.get(), lastUpdate.get()), "X509_CRL_set1_lastUpdate");
  checkOpensslStatus(X509_CRL_set1_nextUpdate(crl.get(), nextUpdate.get()), "X509_CRL_set1_nextUpdate");

  for (const RevokedEntry& entry : revoked) {
    X509RevokedPtr item(checkOpenssl(X509_REVOKED_new(), "X509_REVOKED_new"));
    BIGNUM* rawNumber = nullptr;
    checkOpensslStatus(BN_hex2bn(&rawNumber, entry.serial.c_str()) > 0 ? 1 : 0, "parsing serial " + entry.serial);
    BignumPtr number(rawNumber);
    Asn1IntegerPtr serial(checkOpenssl(BN_to_ASN1_INTEGER(number.get(), nullptr), "BN_to_ASN1_INTEGER"));
    checkOpensslStatus(X509_REVOKED_set_serialNumber(item.get(), serial.get()), "X509_REVOKED_set_serialNumber");
    Asn1TimePtr when(checkOpenssl(ASN1_TIME_set(nullptr, static_cast<time_t>(entry.revokedAt)), "ASN1_TIME_set"));
    checkOpensslStatus(X509_REVOKED_set_revocationDate(item.get(), when.get()), "X509_REVOKED_set_revocationDate");
    OpensslPtr<ASN1_ENUMERATED, ASN1_ENUMERATED_free> reason(checkOpenssl(ASN1_ENUMERATED_new(), "ASN1_ENUMERATED_new"));
    checkOpensslStatus(ASN1_ENUMERATED_set(reason.get(), static_cast<long>(entry.reason)), "ASN1_ENUMERATED_set");
    checkOpensslStatus(X509_REVOKED_add1_ext_i2d(item.get(), NID_crl_reason, reason.get(), 0, 0),
                       "adding the CRL reason");
    checkOpensslStatus(X509_CRL_add0_revoked(crl.get(), item.get()), "X509_CRL_add0_revoked");
    item.release();  // now owned by the CRL
  }

  Asn1IntegerPtr number(checkOpenssl(ASN1_INTEGER_new(), "ASN1_INTEGER_new"));
  checkOpensslStatus(ASN1_INTEGER_set_int64(number.get(), crlNumber), "ASN1_INTEGER_set_int64");
  checkOpensslStatus(X509_CRL_add1_ext_i2d(crl.get(), NID_crl_number, number.get(), 0, 0), "adding the CRL number");
  X509V3_CTX context;
  X509V3_set_ctx(&context, m_caCert.get(), nullptr, nullptr, crl.get(), 0);
  X509ExtensionPtr authorityKeyId(checkOpenssl(
      X509V3_EXT_conf_nid(nullptr, &context, NID_authority_key_identifier, "keyid:always"), "CRL AKI"));
  checkOpensslStatus(X509_CRL_add_ext(crl.get(), authorityKeyId.get(), -1), "X509_CRL_add_ext");
  checkOpensslStatus(X509_CRL_sort(crl.get()), "X509_CRL_sort");
  if (X509_CRL_sign(crl.get(), m_caKey.get(), EVP_sha256()) <= 0) {
    throwOpenssl("signing the CRL");
  }
  return crl;
}

std::string toHex(const unsigned char* bytes, size_t length) {
  static constexpr char kDigits[] = "0123456789ABCDEF";
  std::string hex;
  hex.reserve(length * 2);
  for (size_t i = 0; i < length; ++i) {
    hex += kDigits[bytes[i] >> 4];
    hex += kDigits[bytes[i] & 0x0F];
  }
  return hex;
}

std::string serialHex(const X509& certificate) {
  BignumPtr number(checkOpenssl(ASN1_INTEGER_to_BN(X509_get0_serialNumber(&certificate), nullptr),
                                "ASN1_INTEGER_to_BN"));
  OpensslStringPtr hex(checkOpenssl(BN_bn2hex(number.get()), "BN_bn2hex"));
  return std::string(hex.get());
}

std::string subjectKeyIdHex(const X509& certificate) {
  const ASN1_OCTET_STRING* keyId = X509_get0_subject_key_id(const_cast<X509*>(&certificate));
  if (keyId == nullptr) {
    return {};
  }
  return toHex(ASN1_STRING_get0_data(keyId), static_cast<size_t>(ASN1_STRING_length(keyId)));
}

std::vector<unsigned char> certificateDer(const X509& certificate) {
  unsigned char* der = nullptr;
  int length = i2d_X509(&certificate, &der);
  if (length <= 0) {
    throwOpenssl("encoding a certificate");
  }
  OpensslStringPtr owner(reinterpret_cast<char*>(der));
  return std::vector<unsigned char>(der, der + length);
}

X509Ptr certificateFromDer(const std::vector<unsigned char>& der) {
  const unsigned char* cursor = der.data();
  return X509Ptr(checkOpenssl(d2i_X509(nullptr, &cursor, static_cast<long>(der.size())), "decoding a stored certificate"));
}

std::string certificatePem(const X509& certificate) {
  BioPtr bio(checkOpenssl(BIO_new(BIO_s_mem()), "BIO_new"));
  checkOpensslStatus(PEM_write_bio_X509(bio.get(), &certificate), "PEM_write_bio_X509");
  char* data = nullptr;
  long length = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(length));
}

std::string formatTime(int64_t seconds) {
  std::time_t value = static_cast<std::time_t>(seconds);
  std::tm parts{};
  gmtime_r(&value, &parts);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S UTC", &parts);
  return text;
}

std::string formatDate(int64_t seconds) {
  std::time_t value = static_cast<std::time_t>(seconds);
  std::tm parts{};
  gmtime_r(&value, &parts);
  char text[16];
  std::strftime(text, sizeof text, "%Y-%m-%d", &parts);
  return text;
}

}  // namespace dojang::ca
