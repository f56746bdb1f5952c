// What dojang-p11bench measures: a case (a signature with one mechanism, or an attribute read),
// the worker that runs it on its own session, and the timed run of a case over N threads.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "bench/p11.h"

namespace dojang::bench {

using Bytes = std::vector<CK_BYTE>;

// ---------------------------------------------------------------------------------------------
// The measured operations.

enum class OpKind { Sign, GetAttributes };

struct Case {
  std::string name;
  OpKind kind = OpKind::Sign;
  CK_MECHANISM_TYPE mechanism = 0;
  bool pss = false;
  CK_OBJECT_HANDLE key = 0;      // signing key or the object whose attributes are read
  CK_OBJECT_HANDLE verifyKey = 0;  // for the one-off correctness check
  Bytes input;
};

// One thread's worth of state: its session, preallocated buffers, and the op itself.
class Worker final {
 public:
  Worker(const Case& c, Session session) : m_case(c), m_session(std::move(session)) {
    m_pss = CK_RSA_PKCS_PSS_PARAMS{CKM_SHA256, CKG_MGF1_SHA256, 32};
    m_mech = CK_MECHANISM{c.mechanism, nullptr, 0};
    if (c.pss) {
      m_mech.pParameter = &m_pss;
      m_mech.ulParameterLen = sizeof m_pss;
    }
  }

  // Returns the signature length (sign cases) or the bytes read (attribute case).
  CK_ULONG op() {
    CK_FUNCTION_LIST& f = m_session.fns();
    if (m_case.kind == OpKind::Sign) {
      check(f.C_SignInit(m_session.handle(), &m_mech, m_case.key), "C_SignInit");
      CK_ULONG len = m_sig.size();
      check(f.C_Sign(m_session.handle(), const_cast<CK_BYTE*>(m_case.input.data()),
                     m_case.input.size(), m_sig.data(), &len),
            "C_Sign");
      return len;
    }
    std::array<CK_ATTRIBUTE, 3> tmpl{
        CK_ATTRIBUTE{CKA_LABEL, m_label.data(), m_label.size()},
        CK_ATTRIBUTE{CKA_ID, m_id.data(), m_id.size()},
        CK_ATTRIBUTE{CKA_KEY_TYPE, &m_keyType, sizeof m_keyType},
    };
    check(f.C_GetAttributeValue(m_session.handle(), m_case.key, tmpl.data(), tmpl.size()),
          "C_GetAttributeValue");
    return tmpl[0].ulValueLen + tmpl[1].ulValueLen + tmpl[2].ulValueLen;
  }

  // Signs once and verifies on the token, so a path that returns garbage fast is caught.
  // Throws only when the token says the signature is wrong; a module that cannot verify
  // (no C_Verify, mechanism not offered for verification) gets the reason back instead.
  std::optional<std::string> verifyOnce() {
    if (m_case.kind != OpKind::Sign) return std::nullopt;
    CK_ULONG len = op();
    CK_FUNCTION_LIST& f = m_session.fns();
    CK_RV rv = f.C_VerifyInit(m_session.handle(), &m_mech, m_case.verifyKey);
    if (rv != CKR_OK) return "C_VerifyInit: " + rvName(rv);
    rv = f.C_Verify(m_session.handle(), const_cast<CK_BYTE*>(m_case.input.data()),
                    m_case.input.size(), m_sig.data(), len);
    if (rv == CKR_SIGNATURE_INVALID || rv == CKR_SIGNATURE_LEN_RANGE) {
      throw std::runtime_error(m_case.name + ": the token rejects the signature it made (" +
                               rvName(rv) + ")");
    }
    if (rv != CKR_OK) return "C_Verify: " + rvName(rv);
    return std::nullopt;
  }

 private:
  const Case& m_case;
  Session m_session;
  CK_RSA_PKCS_PSS_PARAMS m_pss{};
  CK_MECHANISM m_mech{};
  std::array<CK_BYTE, 512> m_sig{};
  std::array<CK_BYTE, 64> m_label{};
  std::array<CK_BYTE, 64> m_id{};
  CK_KEY_TYPE m_keyType = 0;
};

struct Result {
  std::string name;
  unsigned threads = 0;
  std::uint64_t ops = 0;
  double seconds = 0;
  double opsPerSecond = 0;
  double p50Us = 0;
  double p99Us = 0;
};

struct Limits {
  double seconds = 2.0;
  std::uint64_t opsPerThread = 0;  // non-zero: fixed op count instead of a duration
  unsigned warmupOps = 3;
};

Result runCase(const Module& module, CK_SLOT_ID slot, const Case& c, unsigned threads,
               const Limits& limits);

}  // namespace dojang::bench
