#include "src/ca/cmp_server/rejections.h"

#include "src/ca/cmp_server/cmp_service.h"
#include "src/ca/issuer/authority.h"

namespace dojang::ca {

OSSL_CMP_PKISI* statusOf(const Rejection& rejection) {
  return OSSL_CMP_STATUSINFO_new(OSSL_CMP_PKISTATUS_rejection, 1 << rejection.failInfoBit,
                                 rejection.text.c_str());
}

OSSL_CMP_PKISI* accepted(const std::string& text) {
  return OSSL_CMP_STATUSINFO_new(OSSL_CMP_PKISTATUS_accepted, 0, text.c_str());
}

std::optional<Rejection> checkFee(const RequestHeader& header, const Profile& profile) {
  const GeneralInfoEntry* acknowledgement = header.findGeneralInfo(kFeeAcknowledgementOid);
  const std::string howTo = std::string(" (send generalInfo ") + kFeeAcknowledgementOid + ":int:" +
                            std::to_string(profile.feeKrw) + ")";
  if (!profile.isPaid()) {
    if (acknowledgement != nullptr && acknowledgement->integer.value_or(-1) != 0) {
      return Rejection{OSSL_CMP_PKIFAILUREINFO_badRequest,
                       "profile " + profile.id + " is free; do not acknowledge a fee"};
    }
    return std::nullopt;
  }
  const std::string required = "fee of " + formatKrw(profile.feeKrw) + " must be acknowledged";
  if (acknowledgement == nullptr) {
    return Rejection{OSSL_CMP_PKIFAILUREINFO_badRequest, required + howTo};
  }
  if (!acknowledgement->integer) {
    return Rejection{OSSL_CMP_PKIFAILUREINFO_badDataFormat,
                     required + "; the acknowledgement must be an INTEGER amount in KRW" + howTo};
  }
  if (*acknowledgement->integer != profile.feeKrw) {
    return Rejection{OSSL_CMP_PKIFAILUREINFO_badRequest,
                     required + "; the request acknowledged " + formatKrw(*acknowledgement->integer) + howTo};
  }
  return std::nullopt;
}

Rejection usedCodeRejection(const std::string& reference, int64_t usedAt) {
  return {OSSL_CMP_PKIFAILUREINFO_notAuthorized,
          "reference number " + reference + " was already used on " + formatTime(usedAt) +
              "; a reference code works once: ask the CA for a new one"};
}

std::optional<Rejection> renewalBlocked(CaStore& store, const CertificateRecord& previous) {
  if (previous.revokedAt) {
    return Rejection{OSSL_CMP_PKIFAILUREINFO_certRevoked,
                     "certificate " + previous.serial + " was revoked on " + formatTime(*previous.revokedAt) +
                         "; it cannot be renewed: a reissue (new issuance with a reference code) is needed"};
  }
  if (auto successor = store.findSuccessor(previous.serial)) {
    return Rejection{OSSL_CMP_PKIFAILUREINFO_duplicateCertReq,
                     "certificate " + previous.serial + " was already renewed on " + formatTime(successor->issuedAt) +
                         " (new serial " + successor->serial + ")"};
  }
  return std::nullopt;
}

}  // namespace dojang::ca
