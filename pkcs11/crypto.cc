// Frontend's cryptographic functions: sign, verify, decrypt and digest, and C_GenerateRandom.
#include "pkcs11/frontend.h"

#include <cstring>
#include <mutex>

#include "pkcs11/frontend_calls.h"
#include "pkcs11/marshalling.h"
#include "src/common/wire/codec.h"
#include "src/common/wire/wire_limits.h"

namespace dojang::frontend {

CK_RV Frontend::operationInit(Kind kind, CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism, CK_OBJECT_HANDLE key) {
  if (mechanism == nullptr) {
    return CKR_ARGUMENTS_BAD;
  }
  auto state = sessionState(session);
  if (!state) {
    return CKR_SESSION_HANDLE_INVALID;
  }
  std::lock_guard sessionLock(state->mutex);
  auto& operation = state->operations[operationIndex(kind)];
  if (operation.active) {
    return CKR_OPERATION_ACTIVE;
  }
  wire::Mechanism wireMechanism;
  if (!toWireMechanism(*mechanism, wireMechanism)) {
    return CKR_MECHANISM_PARAM_INVALID;
  }
  if (wireMechanism.paramsKind == wire::MechanismParams::Oaep && !wireMechanism.data.empty()) {
    return CKR_MECHANISM_PARAM_INVALID;  // OAEP labels: see policy.h
  }
  // The mechanism is checked here, from the cached list, without a round trip.
  wire::MechanismInfo offered;
  CK_RV rv = lookupMechanism(state->slot, mechanism->mechanism, offered);
  if (rv != CKR_OK) {
    return rv;
  }
  if ((offered.flags & mechanismFlag(kind)) == 0) {
    return CKR_MECHANISM_INVALID;
  }
  if (kind != Kind::Digest) {
    // The key is checked by the daemon once; after that the pair is known good.
    const CheckedUse checkKey{state->slot,           std::uint64_t{key},        mechanism->mechanism,
                              wireMechanism.hashAlg, wireMechanism.mgf, wireMechanism.saltOrSource,
                              kind};
    bool known = false;
    {
      std::lock_guard lock(m_mutex);
      known = m_checked.contains(checkKey);
    }
    if (!known) {
      wire::CheckOperationRequest request;
      request.session = session;
      request.operation = kind;
      request.mechanism = wireMechanism;
      request.key = key;
      wire::Empty reply;
      if (rv = sessionCall<wire::CallId::CheckOperation>(session, request, reply); rv != CKR_OK) {
        return rv;
      }
      std::lock_guard lock(m_mutex);
      m_checked.insert(checkKey);
    }
  }
  operation.end();
  operation.active = true;
  operation.mechanism = std::move(wireMechanism);
  operation.key = key;
  return CKR_OK;
}

CK_RV Frontend::operationUpdate(Kind kind, CK_SESSION_HANDLE session, CK_BYTE_PTR data, CK_ULONG length) {
  if (data == nullptr && length > 0) {
    return CKR_ARGUMENTS_BAD;
  }
  auto state = sessionState(session);
  if (!state) {
    return CKR_SESSION_HANDLE_INVALID;
  }
  std::lock_guard sessionLock(state->mutex);
  auto& operation = state->operations[operationIndex(kind)];
  if (!operation.active) {
    return CKR_OPERATION_NOT_INITIALIZED;
  }
  if (operation.haveResult) {
    // A size query has put the operation into its last step: no more input.
    operation.end();
    return CKR_OPERATION_ACTIVE;
  }
  if (operation.data.size() + length > wire::kMaxDataBytes) {
    operation.end();
    return CKR_DATA_LEN_RANGE;
  }
  operation.updated = true;
  operation.data.insert(operation.data.end(), data, data + length);
  return CKR_OK;
}

CK_RV Frontend::operationFinish(Kind kind, CK_SESSION_HANDLE session, CK_BYTE_PTR data, CK_ULONG length,
                                bool singlePart, CK_BYTE_PTR out, CK_ULONG_PTR outLength) {
  auto state = sessionState(session);
  if (!state) {
    return CKR_SESSION_HANDLE_INVALID;
  }
  std::lock_guard sessionLock(state->mutex);
  auto& operation = state->operations[operationIndex(kind)];
  if (!operation.active) {
    return CKR_OPERATION_NOT_INITIALIZED;
  }
  const bool verifying = kind == Kind::Verify;
  if (outLength == nullptr || (data == nullptr && length > 0) || (verifying && out == nullptr)) {
    operation.end();
    return CKR_ARGUMENTS_BAD;
  }
  if (operation.haveResult && operation.resultIsSinglePart != singlePart) {
    // C_DigestFinal after a C_Digest size query (or the reverse): the operation is in the
    // other mode. Like any failed call, this ends it.
    operation.end();
    return CKR_OPERATION_ACTIVE;
  }
  if (singlePart) {
    if (operation.updated) {
      operation.end();
      return CKR_OPERATION_ACTIVE;
    }
    if (!operation.haveResult) {
      if (length > wire::kMaxDataBytes) {
        operation.end();
        return CKR_DATA_LEN_RANGE;
      }
      operation.data.assign(data, data + length);
    }
  }
  if (verifying) {
    wire::VerifyRequest request;
    request.session = session;
    request.mechanism = operation.mechanism;
    request.key = operation.key;
    request.data = std::move(operation.data);
    request.signature.assign(out, out + *outLength);
    wire::Empty reply;
    const CK_RV rv = sessionCall<wire::CallId::Verify>(session, request, reply);
    operation.end();
    return rv;
  }
  if (!operation.haveResult) {
    wire::DataReply reply;
    CK_RV rv = CKR_OK;
    if (kind == Kind::Digest) {
      rv = sessionCall<wire::CallId::Digest>(session, {session, operation.mechanism, operation.data}, reply);
    } else {
      wire::KeyOperationRequest request{session, operation.mechanism, operation.key, std::move(operation.data)};
      rv = kind == Kind::Sign ? sessionCall<wire::CallId::Sign>(session, request, reply)
                              : sessionCall<wire::CallId::Decrypt>(session, request, reply);
      wire::wipe(request.data);
    }
    if (rv != CKR_OK) {
      operation.end();
      return rv;
    }
    operation.result = std::move(reply.data);
    operation.haveResult = true;
    operation.resultIsSinglePart = singlePart;
  }
  bool done = false;
  const CK_RV rv = deliver(operation.result, out, outLength, done);
  if (done) {
    operation.end();
  }
  return rv;
}

CK_RV Frontend::generateRandom(CK_SESSION_HANDLE session, CK_BYTE_PTR out, CK_ULONG length) {
  if (out == nullptr && length > 0) {
    return CKR_ARGUMENTS_BAD;
  }
  if (length > wire::kMaxRandomBytes) {
    return CKR_ARGUMENTS_BAD;
  }
  wire::DataReply reply;
  if (CK_RV rv = sessionCall<wire::CallId::GenerateRandom>(
          session, {session, static_cast<std::uint32_t>(length)}, reply);
      rv != CKR_OK) {
    return rv;
  }
  if (reply.data.size() != length) {
    return CKR_DEVICE_ERROR;
  }
  if (length > 0) {  // C_GenerateRandom(.., 0): nothing to copy, and data() may be null
    std::memcpy(out, reply.data.data(), length);
  }
  return CKR_OK;
}

}  // namespace dojang::frontend
