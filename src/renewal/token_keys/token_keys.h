// The renewal engine's token-backed keys: libp11 over dojang-pkcs11.so in the engine's own process
// (never inside dojangd). The EVP_PKEYs it hands out sign on the token; no key bytes enter the
// process. The engine also drives the same module through raw PKCS#11 (ModuleLibrary) for key
// generation and certificate writes; what libp11 0.4.12 does to such a neighbour:
//
// - Construction: libp11's C_Initialize accepts CKR_CRYPTOKI_ALREADY_INITIALIZED, so the
//   neighbour may have initialised the module first. If TokenKeys comes first, the neighbour's
//   C_Initialize answers CKR_CRYPTOKI_ALREADY_INITIALIZED and it must accept that. TokenKeys never
//   calls PKCS11_open_session, which would C_CloseAllSessions the neighbour's sessions.
// - login(): libp11 takes CKR_USER_ALREADY_LOGGED_IN as success, and dojang keeps one login per
//   process, so after the neighbour's C_Login this succeeds without the token checking the PIN.
// - Destruction ends the process's use of the module: libp11 calls C_CloseAllSessions on every
//   slot (the last session's close logs the process out) and then C_Finalize, even when the
//   neighbour initialised the module. So destroy TokenKeys only when the raw PKCS#11 work is done
//   as well: declare it after the ModuleLibrary, so that it dies first; the ModuleLibrary's own
//   C_Finalize then answers CKR_CRYPTOKI_NOT_INITIALIZED, which is harmless. A neighbour that
//   needs the module afterwards must C_Initialize, open a session and log in again. A constructor
//   that throws after the module loaded does the same, and so does any second TokenKeys dying.
// - Every PkeyPtr from privateKey() must die before its TokenKeys: freeing the key reaches into
//   libp11's context. (X509Ptrs from certificate() are plain copies and may outlive it.)
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "drivers/token/secure_bytes.h"
#include "src/common/ossl/owners.h"

namespace dojang::renewal {

// Which token: every non-empty field must match (token info's serialNumber and label, trailing
// blanks ignored). Both empty: the only token there is.
struct TokenSelector {
  std::string serialNumber;
  std::string label;
};

class TokenKeys final {
 public:
  // Loads the module (PKCS11_CTX_load) and finds the token. Throws dojang::Error: Fatal when the
  // module does not load, BadInput when no token (or more than one) matches.
  TokenKeys(const std::string& modulePath, const TokenSelector& selector);
  ~TokenKeys();
  TokenKeys(const TokenKeys&) = delete;
  TokenKeys& operator=(const TokenKeys&) = delete;
  TokenKeys(TokenKeys&& other) noexcept;
  TokenKeys& operator=(TokenKeys&& other) noexcept;

  // C_Login as the user, once: a wrong PIN throws Error(CKR_PIN_INCORRECT, PinIncorrect) and is
  // never retried here. libp11 keeps a wiped-on-release copy of the PIN to log in again after fork.
  void login(const SecureBytes& pin);
  // The private key object with this CKA_ID as an EVP_PKEY whose operations run on the token.
  // Throws Error(CKR_KEY_HANDLE_INVALID, BadInput) when there is none (private keys are visible
  // only after login()).
  [[nodiscard]] PkeyPtr privateKey(std::span<const std::uint8_t> ckaId) const;
  // A copy of the X.509 certificate object with this CKA_ID; throws Error(BadInput) when none.
  [[nodiscard]] X509Ptr certificate(std::span<const std::uint8_t> ckaId) const;

  [[nodiscard]] const std::string& label() const noexcept { return m_label; }
  [[nodiscard]] const std::string& serialNumber() const noexcept { return m_serialNumber; }

 private:
  struct Loaded;  // the PKCS11_CTX and its slot list, released in the order libp11 needs
  std::unique_ptr<Loaded> m_loaded;
  std::string m_label;
  std::string m_serialNumber;
};

}  // namespace dojang::renewal
