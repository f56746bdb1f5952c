#include "bench/p11.h"

#include <array>
#include <cstdio>
#include <optional>
#include <span>

namespace dojang::bench {

std::string rvName(CK_RV rv) {
  switch (rv) {
#define DOJANG_BENCH_RV(name) \
  case name:                  \
    return #name;
    DOJANG_BENCH_RV(CKR_OK)
    DOJANG_BENCH_RV(CKR_GENERAL_ERROR)
    DOJANG_BENCH_RV(CKR_FUNCTION_FAILED)
    DOJANG_BENCH_RV(CKR_ARGUMENTS_BAD)
    DOJANG_BENCH_RV(CKR_DEVICE_ERROR)
    DOJANG_BENCH_RV(CKR_DEVICE_REMOVED)
    DOJANG_BENCH_RV(CKR_FUNCTION_NOT_SUPPORTED)
    DOJANG_BENCH_RV(CKR_KEY_HANDLE_INVALID)
    DOJANG_BENCH_RV(CKR_KEY_TYPE_INCONSISTENT)
    DOJANG_BENCH_RV(CKR_MECHANISM_INVALID)
    DOJANG_BENCH_RV(CKR_MECHANISM_PARAM_INVALID)
    DOJANG_BENCH_RV(CKR_OBJECT_HANDLE_INVALID)
    DOJANG_BENCH_RV(CKR_OPERATION_ACTIVE)
    DOJANG_BENCH_RV(CKR_OPERATION_NOT_INITIALIZED)
    DOJANG_BENCH_RV(CKR_PIN_INCORRECT)
    DOJANG_BENCH_RV(CKR_PIN_LOCKED)
    DOJANG_BENCH_RV(CKR_SESSION_HANDLE_INVALID)
    DOJANG_BENCH_RV(CKR_SESSION_READ_ONLY)
    DOJANG_BENCH_RV(CKR_SIGNATURE_INVALID)
    DOJANG_BENCH_RV(CKR_SIGNATURE_LEN_RANGE)
    DOJANG_BENCH_RV(CKR_TEMPLATE_INCOMPLETE)
    DOJANG_BENCH_RV(CKR_TEMPLATE_INCONSISTENT)
    DOJANG_BENCH_RV(CKR_TOKEN_NOT_PRESENT)
    DOJANG_BENCH_RV(CKR_TOKEN_NOT_RECOGNIZED)
    DOJANG_BENCH_RV(CKR_USER_NOT_LOGGED_IN)
    DOJANG_BENCH_RV(CKR_USER_ALREADY_LOGGED_IN)
    DOJANG_BENCH_RV(CKR_BUFFER_TOO_SMALL)
    DOJANG_BENCH_RV(CKR_CRYPTOKI_NOT_INITIALIZED)
    DOJANG_BENCH_RV(CKR_CRYPTOKI_ALREADY_INITIALIZED)
    DOJANG_BENCH_RV(CKR_ATTRIBUTE_TYPE_INVALID)
    DOJANG_BENCH_RV(CKR_ATTRIBUTE_SENSITIVE)
    DOJANG_BENCH_RV(CKR_DATA_LEN_RANGE)
#undef DOJANG_BENCH_RV
    default: {
      std::array<char, 32> hex{};
      std::snprintf(hex.data(), hex.size(), "CKR_0x%08lx", rv);
      return hex.data();
    }
  }
}

std::string trimPadded(const unsigned char* text, std::size_t size) {
  std::string s(reinterpret_cast<const char*>(text), size);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\0')) s.pop_back();
  return s;
}

CK_SLOT_ID findSlot(const Module& module, std::string_view label) {
  CK_ULONG n = 0;
  check(module.fns().C_GetSlotList(CK_TRUE, nullptr, &n), "C_GetSlotList");
  std::vector<CK_SLOT_ID> slots(n);
  check(module.fns().C_GetSlotList(CK_TRUE, slots.data(), &n), "C_GetSlotList");
  slots.resize(n);
  std::string seen;
  for (CK_SLOT_ID slot : slots) {
    CK_TOKEN_INFO info{};
    if (module.fns().C_GetTokenInfo(slot, &info) != CKR_OK) continue;
    std::string tokenLabel = trimPadded(info.label, sizeof info.label);
    if (tokenLabel == label) return slot;
    seen += (seen.empty() ? "" : ", ") + ("'" + tokenLabel + "'");
  }
  throw std::runtime_error("no token labelled '" + std::string(label) + "' (tokens: " +
                           (seen.empty() ? "none" : seen) + ")");
}

void login(const Session& session, Pin& pin) {
  CK_RV rv = session.fns().C_Login(session.handle(), CKU_USER, pin.data(), pin.size());
  if (rv == CKR_USER_ALREADY_LOGGED_IN) return;
  check(rv, "C_Login");
}

namespace {

template <typename T>
CK_ATTRIBUTE attr(CK_ATTRIBUTE_TYPE type, T& field) {
  return CK_ATTRIBUTE{type, &field, sizeof field};
}
CK_ATTRIBUTE attrBytes(CK_ATTRIBUTE_TYPE type, std::span<const CK_BYTE> bytes) {
  return CK_ATTRIBUTE{type, const_cast<CK_BYTE*>(bytes.data()), bytes.size()};
}
CK_ATTRIBUTE attrText(CK_ATTRIBUTE_TYPE type, std::string_view text) {
  return CK_ATTRIBUTE{type, const_cast<char*>(text.data()), text.size()};
}

// Owns an active find operation; C_FindObjectsFinal on every way out.
class FindOperation final {
 public:
  FindOperation(const Session& session, std::span<CK_ATTRIBUTE> tmpl) : m_session(session) {
    check(m_session.fns().C_FindObjectsInit(m_session.handle(), tmpl.data(), tmpl.size()),
          "C_FindObjectsInit");
  }
  ~FindOperation() { m_session.fns().C_FindObjectsFinal(m_session.handle()); }
  FindOperation(const FindOperation&) = delete;
  FindOperation& operator=(const FindOperation&) = delete;

  std::optional<CK_OBJECT_HANDLE> next() {
    CK_OBJECT_HANDLE object = 0;
    CK_ULONG found = 0;
    check(m_session.fns().C_FindObjects(m_session.handle(), &object, 1, &found), "C_FindObjects");
    if (found == 0) return std::nullopt;
    return object;
  }

 private:
  const Session& m_session;
};

std::optional<CK_OBJECT_HANDLE> findKey(const Session& session, CK_OBJECT_CLASS cls,
                                        std::string_view label) {
  std::array<CK_ATTRIBUTE, 2> tmpl{attr(CKA_CLASS, cls), attrText(CKA_LABEL, label)};
  FindOperation find(session, tmpl);
  return find.next();
}

// DER OID 1.2.840.10045.3.1.7 (prime256v1 / secp256r1).
constexpr std::array<CK_BYTE, 10> kP256Params{0x06, 0x08, 0x2a, 0x86, 0x48,
                                              0xce, 0x3d, 0x03, 0x01, 0x07};
constexpr std::array<CK_BYTE, 3> kRsaExponent{0x01, 0x00, 0x01};

KeyPair generate(const Session& session, std::string_view label, bool ec) {
  CK_BBOOL yes = CK_TRUE;
  CK_ULONG bits = 2048;
  std::string_view id = label;  // CKA_ID = label bytes; unique enough for a bench token
  std::vector<CK_ATTRIBUTE> pubTmpl{attr(CKA_TOKEN, yes), attr(CKA_VERIFY, yes),
                                    attrText(CKA_LABEL, label), attrText(CKA_ID, id)};
  std::vector<CK_ATTRIBUTE> privTmpl{attr(CKA_TOKEN, yes),     attr(CKA_PRIVATE, yes),
                                     attr(CKA_SENSITIVE, yes), attr(CKA_SIGN, yes),
                                     attrText(CKA_LABEL, label), attrText(CKA_ID, id)};
  CK_MECHANISM mech{ec ? CKM_EC_KEY_PAIR_GEN : CKM_RSA_PKCS_KEY_PAIR_GEN, nullptr, 0};
  if (ec) {
    pubTmpl.push_back(attrBytes(CKA_EC_PARAMS, kP256Params));
  } else {
    pubTmpl.push_back(attr(CKA_MODULUS_BITS, bits));
    pubTmpl.push_back(attrBytes(CKA_PUBLIC_EXPONENT, kRsaExponent));
  }
  KeyPair keys;
  check(session.fns().C_GenerateKeyPair(session.handle(), &mech, pubTmpl.data(), pubTmpl.size(),
                                        privTmpl.data(), privTmpl.size(), &keys.pub, &keys.priv),
        "C_GenerateKeyPair");
  return keys;
}

}  // namespace

KeyPair findOrCreate(const Session& session, std::string_view label, bool ec, bool mayCreate) {
  auto pub = findKey(session, CKO_PUBLIC_KEY, label);
  auto priv = findKey(session, CKO_PRIVATE_KEY, label);
  if (pub && priv) return KeyPair{*pub, *priv};
  if (!mayCreate) {
    throw std::runtime_error("key pair '" + std::string(label) +
                             "' not on the token; run once with --setup");
  }
  std::fprintf(stderr, "p11bench: generating %s key pair '%.*s'\n", ec ? "EC P-256" : "RSA-2048",
               static_cast<int>(label.size()), label.data());
  return generate(session, label, ec);
}

}  // namespace dojang::bench
