#include "src/daemon/wire_to_token.h"

#include <cstring>

#include "src/common/errors/error.h"

namespace dojang::daemon {

token::AttributeList toAttributes(const std::vector<wire::Attribute>& in) {
  token::AttributeList out;
  out.reserve(in.size());
  for (const auto& attribute : in) {
    out.push_back({attribute.type, attribute.value});
  }
  return out;
}

void wipeAttributes(token::AttributeList& list) noexcept {
  for (auto& attribute : list) {
    if (!attribute.value.empty()) {
      explicit_bzero(attribute.value.data(), attribute.value.size());
    }
  }
}

token::Mechanism toMechanism(const wire::Mechanism& in) {
  token::Mechanism out;
  out.type = in.type;
  out.params.hashAlg = in.hashAlg;
  out.params.mgf = in.mgf;
  out.params.data = in.data;
  switch (in.paramsKind) {
    case wire::MechanismParams::None:
      out.params.kind = token::MechanismParameters::Kind::None;
      break;
    case wire::MechanismParams::Pss:
      out.params.kind = token::MechanismParameters::Kind::Pss;
      out.params.saltLength = in.saltOrSource;
      break;
    case wire::MechanismParams::Oaep:
      out.params.kind = token::MechanismParameters::Kind::Oaep;
      out.params.sourceType = in.saltOrSource;
      break;
    case wire::MechanismParams::Raw:
      out.params.kind = token::MechanismParameters::Kind::Raw;
      break;
    default:
      fail(CKR_MECHANISM_PARAM_INVALID, "unknown mechanism parameter kind");
  }
  return out;
}

}  // namespace dojang::daemon
