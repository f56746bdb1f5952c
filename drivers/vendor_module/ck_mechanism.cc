#include "drivers/vendor_module/ck_mechanism.h"

namespace dojang::vendor {

CkMechanism::CkMechanism(const token::Mechanism& mechanism) : m_data(mechanism.params.data) {
  using Kind = token::MechanismParameters::Kind;
  const token::MechanismParameters& params = mechanism.params;
  m_mechanism.mechanism = mechanism.type;
  switch (params.kind) {
    case Kind::None:
      break;
    case Kind::Pss:
      // PKCS#11 2.40 section 2.1.14: hash, MGF, salt length.
      m_pss.hashAlg = params.hashAlg;
      m_pss.mgf = params.mgf;
      m_pss.sLen = params.saltLength;
      m_mechanism.pParameter = &m_pss;
      m_mechanism.ulParameterLen = sizeof m_pss;
      break;
    case Kind::Oaep:
      // PKCS#11 2.40 section 2.1.8: hash, MGF, source (CKZ_DATA_SPECIFIED) and its data.
      m_oaep.hashAlg = params.hashAlg;
      m_oaep.mgf = params.mgf;
      m_oaep.source = params.sourceType;
      m_oaep.pSourceData = m_data.empty() ? nullptr : m_data.data();
      m_oaep.ulSourceDataLen = static_cast<CK_ULONG>(m_data.size());
      m_mechanism.pParameter = &m_oaep;
      m_mechanism.ulParameterLen = sizeof m_oaep;
      break;
    case Kind::Raw:
      m_mechanism.pParameter = m_data.empty() ? nullptr : m_data.data();
      m_mechanism.ulParameterLen = static_cast<CK_ULONG>(m_data.size());
      break;
  }
}

bool sameMechanism(const token::Mechanism& a, const token::Mechanism& b) noexcept {
  return a.type == b.type && a.params.kind == b.params.kind && a.params.hashAlg == b.params.hashAlg &&
         a.params.mgf == b.params.mgf && a.params.saltLength == b.params.saltLength &&
         a.params.sourceType == b.params.sourceType && a.params.data == b.params.data;
}

}  // namespace dojang::vendor
