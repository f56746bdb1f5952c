// A CK_MECHANISM built from the daemon's Mechanism, owning its parameter block so that
// pParameter stays valid for as long as this object lives. Not movable: it points into itself.
#pragma once

#include "drivers/token/token.h"
#include "src/common/cryptoki/cryptoki.h"

namespace dojang::vendor {

class CkMechanism final {
 public:
  explicit CkMechanism(const token::Mechanism& mechanism);
  CkMechanism(const CkMechanism&) = delete;
  CkMechanism& operator=(const CkMechanism&) = delete;
  CkMechanism(CkMechanism&&) = delete;
  CkMechanism& operator=(CkMechanism&&) = delete;
  ~CkMechanism() = default;

  [[nodiscard]] CK_MECHANISM* get() noexcept { return &m_mechanism; }

 private:
  CK_MECHANISM m_mechanism{};
  CK_RSA_PKCS_PSS_PARAMS m_pss{};
  CK_RSA_PKCS_OAEP_PARAMS m_oaep{};
  token::Bytes m_data;
};

// Same mechanism and parameters.
[[nodiscard]] bool sameMechanism(const token::Mechanism& a, const token::Mechanism& b) noexcept;

}  // namespace dojang::vendor
