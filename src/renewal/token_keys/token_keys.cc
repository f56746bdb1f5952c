#include "src/renewal/token_keys/token_keys.h"

#include <libp11.h>
#include <openssl/err.h>

#include <cstring>
#include <string_view>
#include <utility>
#include <vector>

#include "src/common/errors/error.h"
#include "src/common/errors/foreign_errors.h"

namespace dojang::renewal {

struct TokenKeys::Loaded final {
  PKCS11_CTX* ctx = nullptr;
  bool moduleLoaded = false;
  PKCS11_SLOT* slots = nullptr;
  unsigned int slotCount = 0;
  PKCS11_SLOT* slot = nullptr;  // the chosen token's, inside `slots`

  Loaded() = default;
  Loaded(const Loaded&) = delete;
  Loaded& operator=(const Loaded&) = delete;
  // Slots first (they close their sessions through the loaded module), then C_Finalize and
  // dlclose, then the context.
  ~Loaded() {
    if (slots != nullptr) {
      PKCS11_release_all_slots(ctx, slots, slotCount);
    }
    if (moduleLoaded) {
      PKCS11_CTX_unload(ctx);
    }
    if (ctx != nullptr) {
      PKCS11_CTX_free(ctx);
    }
  }
};

namespace {

std::string hex(std::span<const std::uint8_t> bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (const std::uint8_t byte : bytes) {
    out += kDigits[byte >> 4];
    out += kDigits[byte & 0x0f];
  }
  return out;
}

bool sameId(const unsigned char* id, std::size_t length, std::span<const std::uint8_t> wanted) {
  return length == wanted.size() && (length == 0 || std::memcmp(id, wanted.data(), length) == 0);
}

bool matches(std::string_view wanted, const char* actual) {
  return wanted.empty() || (actual != nullptr && wanted == actual);
}

}  // namespace

TokenKeys::TokenKeys(const std::string& modulePath, const TokenSelector& selector)
    : m_loaded(std::make_unique<Loaded>()) {
  Loaded& loaded = *m_loaded;
  loaded.ctx = checkOpenssl(PKCS11_CTX_new(), "PKCS11_CTX_new");
  if (PKCS11_CTX_load(loaded.ctx, modulePath.c_str()) != 0) {
    throwLibp11("libp11 cannot load and initialise PKCS#11 module " + modulePath, ERR_get_CKR_code());
  }
  loaded.moduleLoaded = true;
  if (PKCS11_enumerate_slots(loaded.ctx, &loaded.slots, &loaded.slotCount) != 0) {
    throwLibp11("cannot list the slots of " + modulePath, ERR_get_CKR_code());
  }
  unsigned int found = 0;
  for (unsigned int i = 0; i < loaded.slotCount; ++i) {
    const PKCS11_TOKEN* token = loaded.slots[i].token;
    if (token == nullptr || !matches(selector.serialNumber, token->serialnr) ||
        !matches(selector.label, token->label)) {
      continue;
    }
    if (found++ == 0) {
      loaded.slot = &loaded.slots[i];
    }
  }
  const std::string wanted = "token" + (selector.label.empty() ? "" : " '" + selector.label + "'") +
                             (selector.serialNumber.empty() ? "" : " with serial " + selector.serialNumber);
  if (found == 0) {
    fail(CKR_TOKEN_NOT_PRESENT, "no " + wanted + " in " + modulePath);
  }
  if (found > 1) {
    throw Error(CKR_ARGUMENTS_BAD, ErrorKind::BadInput,
                std::to_string(found) + " tokens match (" + wanted + ") in " + modulePath + "; name one");
  }
  m_label = loaded.slot->token->label != nullptr ? loaded.slot->token->label : "";
  m_serialNumber = loaded.slot->token->serialnr != nullptr ? loaded.slot->token->serialnr : "";
}

TokenKeys::~TokenKeys() = default;
TokenKeys::TokenKeys(TokenKeys&& other) noexcept = default;
TokenKeys& TokenKeys::operator=(TokenKeys&& other) noexcept = default;

void TokenKeys::login(const SecureBytes& pin) {
  // libp11 wants a C string; this copy is wiped before it goes.
  std::vector<char> text(pin.size() + 1, '\0');
  if (!pin.empty()) {
    std::memcpy(text.data(), pin.data(), pin.size());
  }
  // No PIN: the protected authentication path (dojangd's prompt); the engine's own session has
  // usually logged this process in already.
  const int status = PKCS11_login(m_loaded->slot, 0, pin.empty() ? nullptr : text.data());
  explicit_bzero(text.data(), text.size());
  if (status != 0) {
    throwLibp11("login to token '" + m_label + "' failed", ERR_get_CKR_code());
  }
}

PkeyPtr TokenKeys::privateKey(std::span<const std::uint8_t> ckaId) const {
  PKCS11_KEY* keys = nullptr;
  unsigned int count = 0;
  if (PKCS11_enumerate_keys(m_loaded->slot->token, &keys, &count) != 0) {
    throwLibp11("cannot list the private keys on token '" + m_label + "'", ERR_get_CKR_code());
  }
  for (unsigned int i = 0; i < count; ++i) {
    if (sameId(keys[i].id, keys[i].id_len, ckaId)) {
      PkeyPtr key(PKCS11_get_private_key(&keys[i]));
      if (!key) {
        throwLibp11("libp11 cannot use private key " + hex(ckaId) + " on token '" + m_label + "'",
                    ERR_get_CKR_code());
      }
      return key;
    }
  }
  throw Error(CKR_KEY_HANDLE_INVALID, ErrorKind::BadInput,
              "no private key with CKA_ID " + hex(ckaId) + " on token '" + m_label + "' (" +
                  std::to_string(count) + " private keys visible; they need a login)");
}

X509Ptr TokenKeys::certificate(std::span<const std::uint8_t> ckaId) const {
  PKCS11_CERT* certificates = nullptr;
  unsigned int count = 0;
  if (PKCS11_enumerate_certs(m_loaded->slot->token, &certificates, &count) != 0) {
    throwLibp11("cannot list the certificates on token '" + m_label + "'", ERR_get_CKR_code());
  }
  for (unsigned int i = 0; i < count; ++i) {
    if (certificates[i].x509 != nullptr && sameId(certificates[i].id, certificates[i].id_len, ckaId)) {
      return X509Ptr(checkOpenssl(X509_dup(certificates[i].x509), "X509_dup"));
    }
  }
  throw Error(CKR_OBJECT_HANDLE_INVALID, ErrorKind::BadInput,
              "no certificate with CKA_ID " + hex(ckaId) + " on token '" + m_label + "'");
}

}  // namespace dojang::renewal
