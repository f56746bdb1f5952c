#include "src/daemon/scheduler/token_certificates.h"

#include <array>
#include <cstring>
#include <limits>
#include <memory>

#include "src/common/errors/error.h"
#include "src/daemon/client.h"
#include "src/daemon/token_access.h"

namespace dojang::daemon {

namespace {

// The daemon's own client: a number no wire client gets (Service counts up from 1) and no process.
constexpr ClientNumber kSchedulerClient = std::numeric_limits<ClientNumber>::max();

std::string trimmed(std::string text) {
  while (!text.empty() && (text.back() == ' ' || text.back() == '\0')) {
    text.pop_back();
  }
  return text;
}

token::AttributeValue ulongAttribute(CK_ATTRIBUTE_TYPE type, CK_ULONG value) {
  token::AttributeValue attribute{type, token::Bytes(sizeof value)};
  std::memcpy(attribute.value.data(), &value, sizeof value);
  return attribute;
}

void readToken(Client& client, std::uint64_t slot, SlotTable& slots, TokenCertificates& out) {
  auto token = slots.tokenIn(slot);
  const auto description = token->description();
  const TokenPresence presence{trimmed(description.label), trimmed(description.serialNumber)};
  ClientSession session;
  session.slot = slot;
  session.flags = CKF_SERIAL_SESSION;  // read-only: the scheduler only reads here
  session.backend = token->openSession();
  session.token = token;
  TokenAccess access(client, session);
  const token::AttributeList templ = {ulongAttribute(CKA_CLASS, CKO_CERTIFICATE),
                                      ulongAttribute(CKA_CERTIFICATE_TYPE, CKC_X_509)};
  constexpr std::array<CK_ATTRIBUTE_TYPE, 3> kTypes = {CKA_LABEL, CKA_ID, CKA_VALUE};
  std::vector<TokenCertificate> found;
  for (const auto object : access.find(templ)) {
    const auto reads = access.read(object, kTypes);
    if (reads.size() != kTypes.size() || reads[2].status != CKR_OK || reads[2].value.empty()) {
      continue;
    }
    TokenCertificate certificate;
    certificate.tokenLabel = presence.label;
    certificate.tokenSerial = presence.serial;
    if (reads[0].status == CKR_OK) {
      certificate.label.assign(reads[0].value.begin(), reads[0].value.end());
    }
    if (reads[1].status == CKR_OK) {
      certificate.id = reads[1].value;
    }
    certificate.der = reads[2].value;
    found.push_back(std::move(certificate));
  }
  out.tokens.push_back(presence);
  for (auto& certificate : found) {
    out.certificates.push_back(std::move(certificate));
  }
}

}  // namespace

TokenCertificates readTokenCertificates(SlotTable& slots) {
  Client client(kSchedulerClient, {}, "dojangd renewal scheduler", PeerProcess{}, 0);
  TokenCertificates result;
  for (const auto slot : slots.slotIds(true)) {
    try {
      readToken(client, slot, slots, result);
    } catch (const std::exception& error) {
      result.problems.push_back("slot " + std::to_string(slot) + ": " + error.what());
    }
  }
  return result;
}

}  // namespace dojang::daemon
