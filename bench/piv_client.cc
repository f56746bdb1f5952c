#include "bench/piv_client.h"

#include <dlfcn.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <vector>

#include "bench/p11.h"

namespace dojang::bench {
namespace {

using Clock = std::chrono::steady_clock;

long long microsecondsBetween(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration_cast<std::chrono::microseconds>(to - from).count();
}

// Lines in the card's APDU log so far (one line per APDU the card received).
long long apduLines(const std::filesystem::path& log) {
  std::ifstream in(log);
  long long lines = 0;
  for (std::string line; std::getline(in, line);) {
    ++lines;
  }
  return lines;
}

// The module, loaded but not yet initialised; C_Finalize when initialise() ran. Never unloaded:
// OpenSC and OpenSSL-based modules do not take dlclose well, and the process ends right after.
class LoadedModule final {
 public:
  explicit LoadedModule(const std::string& path) {
    void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
      const char* why = dlerror();
      throw std::runtime_error("dlopen " + path + ": " + (why != nullptr ? why : "unknown error"));
    }
    auto* getList = reinterpret_cast<CK_C_GetFunctionList>(dlsym(handle, "C_GetFunctionList"));
    if (getList == nullptr) {
      throw std::runtime_error(path + " exports no C_GetFunctionList");
    }
    check(getList(&m_fns), "C_GetFunctionList");
  }
  ~LoadedModule() {
    if (m_initialised) {
      m_fns->C_Finalize(nullptr);
    }
  }
  LoadedModule(const LoadedModule&) = delete;
  LoadedModule& operator=(const LoadedModule&) = delete;

  void initialise() {
    CK_C_INITIALIZE_ARGS args{};
    args.flags = CKF_OS_LOCKING_OK;  // as NSS does
    check(m_fns->C_Initialize(&args), "C_Initialize");
    m_initialised = true;
  }
  void finalise() {
    m_initialised = false;
    check(m_fns->C_Finalize(nullptr), "C_Finalize");
  }
  [[nodiscard]] CK_FUNCTION_LIST& fns() const noexcept { return *m_fns; }

 private:
  CK_FUNCTION_LIST* m_fns = nullptr;
  bool m_initialised = false;
};

class OpenSession final {
 public:
  OpenSession(CK_FUNCTION_LIST& fns, CK_SLOT_ID slot) : m_fns(fns) {
    check(m_fns.C_OpenSession(slot, CKF_SERIAL_SESSION, nullptr, nullptr, &m_handle), "C_OpenSession");
  }
  ~OpenSession() { m_fns.C_CloseSession(m_handle); }
  OpenSession(const OpenSession&) = delete;
  OpenSession& operator=(const OpenSession&) = delete;
  [[nodiscard]] CK_SESSION_HANDLE handle() const noexcept { return m_handle; }

 private:
  CK_FUNCTION_LIST& m_fns;
  CK_SESSION_HANDLE m_handle = 0;
};

// Slots whose token is present and initialised (the uninitialised SoftHSM slot beside the card in
// dojangd, or vpcd's second, empty reader under OpenSC, are looked at and skipped).
std::vector<CK_SLOT_ID> tokenSlots(CK_FUNCTION_LIST& fns) {
  CK_ULONG count = 0;
  check(fns.C_GetSlotList(CK_TRUE, nullptr, &count), "C_GetSlotList");
  std::vector<CK_SLOT_ID> slots(count);
  check(fns.C_GetSlotList(CK_TRUE, slots.data(), &count), "C_GetSlotList");
  slots.resize(count);
  std::vector<CK_SLOT_ID> initialised;
  for (const CK_SLOT_ID slot : slots) {
    CK_SLOT_INFO slotInfo{};
    CK_TOKEN_INFO tokenInfo{};
    if (fns.C_GetSlotInfo(slot, &slotInfo) == CKR_OK && fns.C_GetTokenInfo(slot, &tokenInfo) == CKR_OK &&
        (tokenInfo.flags & CKF_TOKEN_INITIALIZED) != 0) {
      initialised.push_back(slot);
    }
  }
  return initialised;
}

std::vector<CK_OBJECT_HANDLE> findObjects(CK_FUNCTION_LIST& fns, CK_SESSION_HANDLE session,
                                          std::vector<CK_ATTRIBUTE> query) {
  check(fns.C_FindObjectsInit(session, query.data(), static_cast<CK_ULONG>(query.size())), "C_FindObjectsInit");
  std::vector<CK_OBJECT_HANDLE> found;
  std::array<CK_OBJECT_HANDLE, 16> batch{};
  for (;;) {
    CK_ULONG n = 0;
    const CK_RV rv = fns.C_FindObjects(session, batch.data(), batch.size(), &n);
    if (rv != CKR_OK) {
      fns.C_FindObjectsFinal(session);
      check(rv, "C_FindObjects");
    }
    found.insert(found.end(), batch.begin(), batch.begin() + static_cast<std::ptrdiff_t>(n));
    if (n < batch.size()) {
      break;
    }
  }
  check(fns.C_FindObjectsFinal(session), "C_FindObjectsFinal");
  return found;
}

// Sizes first, then the values; attributes the object lacks come back unavailable, which is fine.
// Returns the bytes read.
std::size_t readAttributes(CK_FUNCTION_LIST& fns, CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object,
                           const std::vector<CK_ATTRIBUTE_TYPE>& types) {
  std::vector<CK_ATTRIBUTE> attributes;
  for (const CK_ATTRIBUTE_TYPE type : types) {
    attributes.push_back({type, nullptr, 0});
  }
  const auto tolerated = [](CK_RV rv) {
    return rv == CKR_OK || rv == CKR_ATTRIBUTE_TYPE_INVALID || rv == CKR_ATTRIBUTE_SENSITIVE;
  };
  CK_RV rv = fns.C_GetAttributeValue(session, object, attributes.data(), static_cast<CK_ULONG>(attributes.size()));
  if (!tolerated(rv)) {
    check(rv, "C_GetAttributeValue (sizes)");
  }
  std::vector<std::vector<CK_BYTE>> buffers;
  std::vector<CK_ATTRIBUTE> available;
  for (const auto& attribute : attributes) {
    if (attribute.ulValueLen == CK_UNAVAILABLE_INFORMATION) {
      continue;
    }
    buffers.emplace_back(std::max<CK_ULONG>(attribute.ulValueLen, 1));
    available.push_back({attribute.type, buffers.back().data(), attribute.ulValueLen});
  }
  if (available.empty()) {
    return 0;
  }
  rv = fns.C_GetAttributeValue(session, object, available.data(), static_cast<CK_ULONG>(available.size()));
  if (!tolerated(rv)) {
    check(rv, "C_GetAttributeValue");
  }
  std::size_t bytes = 0;
  for (const auto& attribute : available) {
    if (attribute.ulValueLen != CK_UNAVAILABLE_INFORMATION) {
      bytes += attribute.ulValueLen;
    }
  }
  return bytes;
}

std::vector<CK_BYTE> attributeBytes(CK_FUNCTION_LIST& fns, CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object,
                                    CK_ATTRIBUTE_TYPE type) {
  CK_ATTRIBUTE attribute{type, nullptr, 0};
  check(fns.C_GetAttributeValue(session, object, &attribute, 1), "C_GetAttributeValue");
  std::vector<CK_BYTE> value(attribute.ulValueLen);
  attribute.pValue = value.data();
  check(fns.C_GetAttributeValue(session, object, &attribute, 1), "C_GetAttributeValue");
  value.resize(attribute.ulValueLen);
  return value;
}

// A raw r || s ECDSA signature over `hash`, checked against the certificate's public key.
bool verifiesAgainst(const std::vector<CK_BYTE>& certificateDer, const std::array<CK_BYTE, 32>& hash,
                     const std::vector<CK_BYTE>& signature) {
  const unsigned char* cursor = certificateDer.data();
  const std::unique_ptr<X509, decltype(&X509_free)> certificate(
      d2i_X509(nullptr, &cursor, static_cast<long>(certificateDer.size())), X509_free);
  if (!certificate || signature.size() != 64) {
    return false;
  }
  const std::unique_ptr<ECDSA_SIG, decltype(&ECDSA_SIG_free)> sig(ECDSA_SIG_new(), ECDSA_SIG_free);
  BIGNUM* r = BN_bin2bn(signature.data(), 32, nullptr);
  BIGNUM* s = BN_bin2bn(signature.data() + 32, 32, nullptr);
  if (!sig || ECDSA_SIG_set0(sig.get(), r, s) != 1) {
    BN_free(r);
    BN_free(s);
    return false;
  }
  unsigned char* der = nullptr;
  const int derLength = i2d_ECDSA_SIG(sig.get(), &der);
  const std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> context(
      EVP_PKEY_CTX_new(X509_get0_pubkey(certificate.get()), nullptr), EVP_PKEY_CTX_free);
  const bool good = derLength > 0 && context && EVP_PKEY_verify_init(context.get()) == 1 &&
                    EVP_PKEY_verify(context.get(), der, static_cast<std::size_t>(derLength), hash.data(),
                                    hash.size()) == 1;
  OPENSSL_free(der);
  return good;
}

}  // namespace

int runListClient(const PivClientOptions& options) {
  const long long apdusBefore = apduLines(options.apduLog);
  const auto loadStart = Clock::now();
  LoadedModule module(options.module);
  const auto listStart = Clock::now();
  module.initialise();
  const auto initialised = Clock::now();
  CK_FUNCTION_LIST& fns = module.fns();
  std::size_t tokens = 0;
  std::size_t certificates = 0;
  std::size_t publicKeys = 0;
  std::size_t privateKeys = 0;
  std::size_t certificateBytes = 0;
  for (const CK_SLOT_ID slot : tokenSlots(fns)) {
    ++tokens;
    const OpenSession session(fns, slot);
    CK_OBJECT_CLASS certificateClass = CKO_CERTIFICATE;
    for (const CK_OBJECT_HANDLE object :
         findObjects(fns, session.handle(), {{CKA_CLASS, &certificateClass, sizeof certificateClass}})) {
      ++certificates;
      certificateBytes += readAttributes(fns, session.handle(), object,
                                         {CKA_CLASS, CKA_CERTIFICATE_TYPE, CKA_TOKEN, CKA_ID, CKA_LABEL, CKA_VALUE,
                                          CKA_SUBJECT, CKA_ISSUER, CKA_SERIAL_NUMBER});
    }
    CK_OBJECT_CLASS publicClass = CKO_PUBLIC_KEY;
    for (const CK_OBJECT_HANDLE object :
         findObjects(fns, session.handle(), {{CKA_CLASS, &publicClass, sizeof publicClass}})) {
      ++publicKeys;
      (void)readAttributes(fns, session.handle(), object,
                           {CKA_CLASS, CKA_KEY_TYPE, CKA_ID, CKA_LABEL, CKA_MODULUS, CKA_PUBLIC_EXPONENT,
                            CKA_EC_PARAMS, CKA_EC_POINT});
    }
    CK_OBJECT_CLASS privateClass = CKO_PRIVATE_KEY;
    for (const CK_OBJECT_HANDLE object :
         findObjects(fns, session.handle(), {{CKA_CLASS, &privateClass, sizeof privateClass}})) {
      ++privateKeys;
      (void)readAttributes(fns, session.handle(), object,
                           {CKA_CLASS, CKA_KEY_TYPE, CKA_ID, CKA_LABEL, CKA_SIGN, CKA_DECRYPT,
                            CKA_ALWAYS_AUTHENTICATE});
    }
  }
  const auto listEnd = Clock::now();
  const long long apdusAfter = apduLines(options.apduLog);
  const auto finalizeStart = Clock::now();
  module.finalise();
  const auto finalizeEnd = Clock::now();
  std::printf("load_us=%lld init_us=%lld list_us=%lld finalize_us=%lld apdus=%lld tokens=%zu certs=%zu pubkeys=%zu "
              "privkeys=%zu cert_bytes=%zu\n",
              microsecondsBetween(loadStart, listStart), microsecondsBetween(listStart, initialised),
              microsecondsBetween(listStart, listEnd),
              microsecondsBetween(finalizeStart, finalizeEnd), apdusAfter - apdusBefore, tokens, certificates,
              publicKeys, privateKeys, certificateBytes);
  return 0;
}

int runSignClient(const PivClientOptions& options) {
  LoadedModule module(options.module);
  module.initialise();
  CK_FUNCTION_LIST& fns = module.fns();
  CK_BYTE keyId = 0x01;
  CK_OBJECT_CLASS privateClass = CKO_PRIVATE_KEY;
  CK_OBJECT_CLASS certificateClass = CKO_CERTIFICATE;
  CK_KEY_TYPE ecType = CKK_EC;
  std::string seen;
  for (const CK_SLOT_ID slot : tokenSlots(fns)) {
    const OpenSession session(fns, slot);
    // Logged in first: a module may show private keys only then.
    std::vector<CK_UTF8CHAR> pin(options.pin.begin(), options.pin.end());
    if (const CK_RV rv = fns.C_Login(session.handle(), CKU_USER, pin.data(), static_cast<CK_ULONG>(pin.size()));
        rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
      check(rv, "C_Login");
    }
    const auto keys = findObjects(fns, session.handle(),
                                  {{CKA_CLASS, &privateClass, sizeof privateClass},
                                   {CKA_KEY_TYPE, &ecType, sizeof ecType},
                                   {CKA_ID, &keyId, 1}});
    const auto certificates = findObjects(
        fns, session.handle(), {{CKA_CLASS, &certificateClass, sizeof certificateClass}, {CKA_ID, &keyId, 1}});
    if (keys.empty() || certificates.empty()) {
      seen += " slot " + std::to_string(slot) + ": " + std::to_string(keys.size()) + " key(s), " +
              std::to_string(certificates.size()) + " certificate(s);";
      continue;
    }
    const auto certificate = attributeBytes(fns, session.handle(), certificates.front(), CKA_VALUE);
    std::array<CK_BYTE, 32> hash{};
    for (std::size_t i = 0; i < hash.size(); ++i) {
      hash[i] = static_cast<CK_BYTE>(i * 7 + 1);
    }
    std::vector<CK_BYTE> signature(64);
    CK_MECHANISM mechanism{CKM_ECDSA, nullptr, 0};
    const auto signOnce = [&] {
      signature.assign(64, 0);
      CK_ULONG length = static_cast<CK_ULONG>(signature.size());
      check(fns.C_SignInit(session.handle(), &mechanism, keys.front()), "C_SignInit");
      check(fns.C_Sign(session.handle(), hash.data(), static_cast<CK_ULONG>(hash.size()), signature.data(), &length),
            "C_Sign");
      signature.resize(length);
    };
    for (int warmUp = 0; warmUp < 2; ++warmUp) {
      signOnce();
      if (!verifiesAgainst(certificate, hash, signature)) {
        throw std::runtime_error("the signature does not verify against the certificate with CKA_ID 01");
      }
    }
    const long long apdusBefore = apduLines(options.apduLog);
    std::vector<long long> times;
    for (int i = 0; i < options.signatures; ++i) {
      const auto start = Clock::now();
      signOnce();
      times.push_back(microsecondsBetween(start, Clock::now()));
    }
    const long long apdusAfter = apduLines(options.apduLog);
    if (!verifiesAgainst(certificate, hash, signature)) {
      throw std::runtime_error("the last signature does not verify");
    }
    std::sort(times.begin(), times.end());
    std::printf("sign_us_median=%lld sign_us_min=%lld sign_us_max=%lld signatures=%d apdus_per_signature=%.2f\n",
                times[times.size() / 2], times.front(), times.back(), options.signatures,
                static_cast<double>(apdusAfter - apdusBefore) / options.signatures);
    fns.C_Logout(session.handle());
    return 0;
  }
  throw std::runtime_error("no token with an EC private key and a certificate with CKA_ID 01 (" +
                           (seen.empty() ? std::string("no initialised token") : seen) + ")");
}

}  // namespace dojang::bench
