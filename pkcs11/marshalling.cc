#include "pkcs11/marshalling.h"

#include <sys/random.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "src/common/wire/codec.h"
#include "src/common/wire/wire_limits.h"

extern char* program_invocation_short_name;

namespace dojang::frontend {

namespace {

constexpr bool isPointerArrayAttribute(CK_ATTRIBUTE_TYPE type) {
  // Nested templates hold pointers and cannot cross a process boundary. CKA_ALLOWED_MECHANISMS
  // is an array too, but of plain numbers.
  return (type & CKF_ARRAY_ATTRIBUTE) != 0 && type != CKA_ALLOWED_MECHANISMS;
}

bool isPssMechanism(CK_MECHANISM_TYPE type) {
  switch (type) {
    case CKM_RSA_PKCS_PSS:
    case CKM_SHA1_RSA_PKCS_PSS:
    case CKM_SHA224_RSA_PKCS_PSS:
    case CKM_SHA256_RSA_PKCS_PSS:
    case CKM_SHA384_RSA_PKCS_PSS:
    case CKM_SHA512_RSA_PKCS_PSS:
      return true;
    default:
      return false;
  }
}

}  // namespace

wire::HelloRequest makeHello() {
  wire::HelloRequest hello;
  hello.clientId.resize(16);
  std::size_t filled = 0;
  while (filled < hello.clientId.size()) {
    const ssize_t n = ::getrandom(hello.clientId.data() + filled, hello.clientId.size() - filled, 0);
    if (n > 0) {
      filled += static_cast<std::size_t>(n);
    } else if (errno != EINTR) {
      break;
    }
  }
  hello.pid = static_cast<std::uint32_t>(::getpid());
  hello.program = program_invocation_short_name != nullptr ? program_invocation_short_name : "unknown";
  return hello;
}

CK_RV toWireTemplate(const CK_ATTRIBUTE* templ, CK_ULONG count, std::vector<wire::Attribute>& out) {
  if (count > 0 && templ == nullptr) {
    return CKR_ARGUMENTS_BAD;
  }
  if (count > wire::kMaxTemplateAttributes) {
    return CKR_TEMPLATE_INCONSISTENT;
  }
  out.clear();
  out.reserve(count);
  for (CK_ULONG i = 0; i < count; ++i) {
    const auto& attribute = templ[i];
    if (isPointerArrayAttribute(attribute.type)) {
      return CKR_ATTRIBUTE_TYPE_INVALID;
    }
    // A type given twice leaves the daemon and the token free to read different values.
    for (CK_ULONG j = 0; j < i; ++j) {
      if (templ[j].type == attribute.type) {
        return CKR_TEMPLATE_INCONSISTENT;
      }
    }
    if (attribute.ulValueLen > wire::kMaxDataBytes ||
        (attribute.pValue == nullptr && attribute.ulValueLen != 0)) {
      return CKR_ATTRIBUTE_VALUE_INVALID;
    }
    const auto* bytes = static_cast<const std::uint8_t*>(attribute.pValue);
    out.push_back({attribute.type, wire::Bytes(bytes, bytes + attribute.ulValueLen)});
  }
  return CKR_OK;
}

void wipeTemplate(std::vector<wire::Attribute>& templ) {
  for (auto& attribute : templ) {
    wire::wipe(attribute.value);
  }
}

bool toWireMechanism(const CK_MECHANISM& in, wire::Mechanism& out) {
  out = {};
  out.type = in.mechanism;
  if (in.pParameter == nullptr || in.ulParameterLen == 0) {
    return in.ulParameterLen == 0;
  }
  if (isPssMechanism(in.mechanism)) {
    if (in.ulParameterLen != sizeof(CK_RSA_PKCS_PSS_PARAMS)) {
      return false;
    }
    const auto* pss = static_cast<const CK_RSA_PKCS_PSS_PARAMS*>(in.pParameter);
    out.paramsKind = wire::MechanismParams::Pss;
    out.hashAlg = pss->hashAlg;
    out.mgf = pss->mgf;
    out.saltOrSource = pss->sLen;
    return true;
  }
  if (in.mechanism == CKM_RSA_PKCS_OAEP) {
    if (in.ulParameterLen != sizeof(CK_RSA_PKCS_OAEP_PARAMS)) {
      return false;
    }
    const auto* oaep = static_cast<const CK_RSA_PKCS_OAEP_PARAMS*>(in.pParameter);
    out.paramsKind = wire::MechanismParams::Oaep;
    out.hashAlg = oaep->hashAlg;
    out.mgf = oaep->mgf;
    out.saltOrSource = oaep->source;
    if (oaep->ulSourceDataLen > 0) {
      if (oaep->pSourceData == nullptr || oaep->ulSourceDataLen > wire::kMaxStringBytes) {
        return false;
      }
      const auto* bytes = static_cast<const std::uint8_t*>(oaep->pSourceData);
      out.data.assign(bytes, bytes + oaep->ulSourceDataLen);
    }
    return true;
  }
  if (in.ulParameterLen > wire::kMaxStringBytes) {
    return false;
  }
  const auto* bytes = static_cast<const std::uint8_t*>(in.pParameter);
  out.paramsKind = wire::MechanismParams::Raw;
  out.data.assign(bytes, bytes + in.ulParameterLen);
  return true;
}

CK_RV deliver(const wire::Bytes& result, CK_BYTE_PTR out, CK_ULONG_PTR outLength, bool& done) {
  done = false;
  if (out == nullptr) {
    *outLength = result.size();
    return CKR_OK;
  }
  if (*outLength < result.size()) {
    *outLength = result.size();
    return CKR_BUFFER_TOO_SMALL;
  }
  if (!result.empty()) {  // an empty result's data() may be null
    std::memcpy(out, result.data(), result.size());
  }
  *outLength = result.size();
  done = true;
  return CKR_OK;
}

}  // namespace dojang::frontend
