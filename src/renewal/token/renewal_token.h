// The renewal's own work on the token, through raw PKCS#11 calls on a module's function list
// (dojang-pkcs11.so: the engine is an application like any other, so dojangd's login isolation
// and forced key protection apply to it): find certificates and their keys, generate the new pair
// on the token, store the issued certificate, relabel and delete objects. No call here reads or
// writes private-key bytes; the new key is sensitive, never extractable and made on the token.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "drivers/token/secure_bytes.h"
#include "src/common/cryptoki/cryptoki.h"
#include "src/common/ossl/owners.h"

namespace dojang::renewal {

using Bytes = std::vector<std::uint8_t>;

// The algorithm of a key pair: an EC curve (by OpenSSL short name) or an RSA size.
struct KeySpec {
  enum class Kind { Ec, Rsa };
  Kind kind = Kind::Ec;
  std::string curve = "prime256v1";  // Ec only
  unsigned rsaBits = 2048;           // Rsa only

  // "ec-p256", "ec-p384", "rsa-2048", ...: what the journal and --key-type say.
  [[nodiscard]] std::string name() const;
  // Parses name(); nullopt for anything else.
  [[nodiscard]] static std::optional<KeySpec> fromName(const std::string& name);
};

// A certificate object on the token, with the CKA_ID it shares with its key pair.
struct TokenCertificate {
  CK_OBJECT_HANDLE handle = CK_INVALID_HANDLE;
  Bytes der;
  Bytes id;
  std::string label;
};

struct TokenIdentity {
  CK_SLOT_ID slot = 0;
  std::string label;
  std::string serial;
};

// Every token present, as the module shows them.
[[nodiscard]] std::vector<TokenIdentity> tokensOf(CK_FUNCTION_LIST& functions);

class RenewalToken final {
 public:
  // Opens a read-write session on the slot; closes it on destruction.
  RenewalToken(CK_FUNCTION_LIST& functions, TokenIdentity token);
  ~RenewalToken();
  RenewalToken(const RenewalToken&) = delete;
  RenewalToken& operator=(const RenewalToken&) = delete;

  [[nodiscard]] const TokenIdentity& identity() const noexcept { return m_token; }
  [[nodiscard]] bool loggedIn() const;
  // C_Login(CKU_USER). A wrong PIN throws dojang::Error(CKR_PIN_INCORRECT, PinIncorrect) whose
  // message says what the token tells of the tries left; it is never retried here.
  void login(const SecureBytes& pin);

  [[nodiscard]] std::vector<TokenCertificate> certificates() const;
  // The object of `objectClass` carrying this CKA_ID, if any.
  [[nodiscard]] std::optional<CK_OBJECT_HANDLE> findById(CK_OBJECT_CLASS objectClass, const Bytes& id) const;
  [[nodiscard]] std::vector<CK_OBJECT_HANDLE> allWithId(const Bytes& id) const;

  struct GeneratedPair {
    CK_OBJECT_HANDLE publicKey = CK_INVALID_HANDLE;
    CK_OBJECT_HANDLE privateKey = CK_INVALID_HANDLE;
  };
  // C_GenerateKeyPair on the token: both halves token objects with this CKA_ID and label; the
  // private half private, sensitive, not extractable, for signing.
  GeneratedPair generateKeyPair(const KeySpec& spec, const Bytes& id, const std::string& label);
  // A token certificate object (CKC_X_509) for `der` under this CKA_ID and label.
  CK_OBJECT_HANDLE storeCertificate(const Bytes& der, const Bytes& id, const std::string& label);
  void relabel(CK_OBJECT_HANDLE object, const std::string& label);
  void destroy(CK_OBJECT_HANDLE object);

  [[nodiscard]] std::optional<Bytes> attribute(CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type) const;
  [[nodiscard]] std::optional<bool> boolAttribute(CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type) const;

 private:
  [[nodiscard]] std::vector<CK_OBJECT_HANDLE> find(std::vector<CK_ATTRIBUTE> templ) const;

  CK_FUNCTION_LIST& m_functions;
  TokenIdentity m_token;
  CK_SESSION_HANDLE m_session = CK_INVALID_HANDLE;
};

// DER into an X509; Error(BadInput) when it is not one certificate.
[[nodiscard]] X509Ptr parseCertificate(const Bytes& der);

// The key spec of a certificate's public key (from the certificate; the key itself is never read).
[[nodiscard]] KeySpec keySpecOfCertificate(const Bytes& der);

}  // namespace dojang::renewal
