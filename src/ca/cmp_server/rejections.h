// The CA's policy verdicts that more than one step of a request reaches: the rejection type, the
// PKIStatusInfo built from it, and the checks that are repeated under the state lock.
#pragma once

#include <openssl/cmp.h>

#include <cstdint>
#include <optional>
#include <string>

#include "src/ca/cmp_server/message_view.h"
#include "src/ca/profiles/profile.h"
#include "src/ca/store/ca_store.h"

namespace dojang::ca {

// A rejection decided by our policy: PKIFailureInfo bit plus the statusString people read.
struct Rejection final {
  int failInfoBit = OSSL_CMP_PKIFAILUREINFO_badRequest;
  std::string text;
};

// New PKIStatusInfo objects; OpenSSL takes ownership when they are returned from a callback.
[[nodiscard]] OSSL_CMP_PKISI* statusOf(const Rejection& rejection);
[[nodiscard]] OSSL_CMP_PKISI* accepted(const std::string& text);

// Whether the request acknowledges the profile's fee (kFeeAcknowledgementOid) correctly.
[[nodiscard]] std::optional<Rejection> checkFee(const RequestHeader& header, const Profile& profile);

[[nodiscard]] Rejection usedCodeRejection(const std::string& reference, int64_t usedAt);

// What stops a renewal of `previous` once it is signed and in the window: checked before signing
// and again, under the state lock, just before the new certificate is recorded.
[[nodiscard]] std::optional<Rejection> renewalBlocked(CaStore& store, const CertificateRecord& previous);

}  // namespace dojang::ca
