// Private keys as a prompt-mode token shows them to clients that never logged in (browsers,
// ssh): one stand-in per key pair, made from the public key or the certificate with the same
// CKA_ID, so that CKA_ID, CKA_LABEL, CKA_KEY_TYPE, CKA_MODULUS / CKA_EC_PARAMS and CKA_SIGN can
// be found and read before anyone typed a PIN. A signature or decryption on a stand-in runs on
// the real private key, found by CKA_ID once the PIN prompt has logged the token in.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "drivers/token/token.h"

namespace dojang::daemon {

// Stand-in object IDs carry this bit; backend object IDs never do (drivers number from 1).
inline constexpr token::ObjectId kStandInBit = token::ObjectId{1} << 62;
[[nodiscard]] constexpr bool isStandIn(token::ObjectId id) noexcept {
  return (id & kStandInBit) != 0;
}

// What one public key or certificate says about its private key: the attributes named by
// kKeySourceTypes, in that order.
inline constexpr CK_ATTRIBUTE_TYPE kKeySourceTypes[] = {
    CKA_CLASS,     CKA_ID,     CKA_LABEL,   CKA_KEY_TYPE, CKA_MODULUS, CKA_PUBLIC_EXPONENT,
    CKA_EC_PARAMS, CKA_VERIFY, CKA_ENCRYPT, CKA_SUBJECT,  CKA_VALUE,   CKA_CERTIFICATE_TYPE};

struct StandInKey {
  token::ObjectId id = 0;
  token::Bytes keyId;  // CKA_ID, never empty
  CK_KEY_TYPE keyType = 0;
  bool canSign = false;
  bool canDecrypt = false;
  std::map<CK_ATTRIBUTE_TYPE, token::Bytes> attributes;

  // CKR_ATTRIBUTE_SENSITIVE for key material, CKR_ATTRIBUTE_TYPE_INVALID for what it lacks.
  [[nodiscard]] token::AttributeRead read(CK_ATTRIBUTE_TYPE type) const;
  [[nodiscard]] bool matches(const token::AttributeList& templ) const;
};

class StandInKeys final {
 public:
  // Rebuilds the set from every public key and certificate of the token (each a list of reads
  // of kKeySourceTypes). Public keys win over certificates; a stand-in keeps its ID for as long
  // as this object lives, across rebuilds.
  void rebuild(const std::vector<std::vector<token::AttributeRead>>& sources);
  [[nodiscard]] const StandInKey* find(token::ObjectId id) const;
  [[nodiscard]] const std::vector<StandInKey>& all() const noexcept { return m_keys; }
  // Whether a real private key with this CKA_ID and key type is shown as a stand-in.
  [[nodiscard]] bool covers(std::span<const std::uint8_t> keyId, CK_KEY_TYPE keyType) const;

 private:
  std::map<std::pair<token::Bytes, CK_KEY_TYPE>, token::ObjectId> m_ids;
  token::ObjectId m_nextId = kStandInBit | 1;
  std::vector<StandInKey> m_keys;
};

}  // namespace dojang::daemon
