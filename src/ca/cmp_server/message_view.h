// Read-only views of the parts of a CMP request that OpenSSL 3.0 parses but has no getters for:
// the PKIHeader's protection algorithm, senderKID and generalInfo (OpenSSL 3.3 adds
// OSSL_CMP_HDR_get0_geninfo_ITAVs) and the public key in a CRMF certificate template (3.2 adds
// OSSL_CRMF_CERTTEMPLATE_get0_publicKey). OpenSSL re-encodes its own parsed structure and decodes
// it again with OpenSSL's template decoder; we never encode or walk DER ourselves.
#pragma once

#include <openssl/asn1.h>
#include <openssl/cmp.h>
#include <openssl/crmf.h>

#include <optional>
#include <string>
#include <vector>

#include "src/common/ossl/owners.h"

namespace dojang::ca {

// PKIBody CHOICE indexes as OSSL_CMP_MSG_get_bodytype returns them (RFC 9810 section 5.1.2);
// OpenSSL 3.0 keeps its own names for them private.
namespace body {
inline constexpr int kIr = 0, kIp = 1, kCr = 2, kCp = 3, kP10cr = 4, kKur = 7, kKup = 8, kRr = 11, kRp = 12,
                     kPkiConf = 19, kGenm = 21, kGenp = 22, kError = 23, kCertConf = 24, kPollReq = 25;
}  // namespace body

struct GeneralInfoEntry final {
  std::string oid;                    // dotted form
  std::optional<long long> integer;  // set when the value is an INTEGER that fits
  bool hasValue = false;
};

struct RequestHeader final {
  bool macProtected = false;        // password-based MAC (reference number + authorization code)
  bool signatureProtected = false;  // signed with a certificate's key
  std::optional<std::string> senderKid;  // raw bytes: reference number, or the signer's SKI
  std::vector<GeneralInfoEntry> generalInfo;

  [[nodiscard]] const GeneralInfoEntry* findGeneralInfo(const std::string& oid) const;
};

// Throws dojang::Error(BadInput) when the header cannot be read.
[[nodiscard]] RequestHeader readRequestHeader(const OSSL_CMP_MSG& request);

// The public key a CRMF request asks to certify; null when the template carries none.
[[nodiscard]] PkeyPtr requestedPublicKey(const OSSL_CRMF_MSG& certRequest);

}  // namespace dojang::ca
