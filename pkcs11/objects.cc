// Frontend's object functions: finding, reading and writing attributes, creating, copying,
// destroying and generating objects.
#include "pkcs11/frontend.h"

#include <cstring>
#include <mutex>

#include "pkcs11/frontend_calls.h"
#include "pkcs11/marshalling.h"
#include "src/common/wire/wire_limits.h"

namespace dojang::frontend {

CK_RV Frontend::findObjectsInit(CK_SESSION_HANDLE session, CK_ATTRIBUTE_PTR templ, CK_ULONG count) {
  auto state = sessionState(session);
  if (!state) {
    return CKR_SESSION_HANDLE_INVALID;
  }
  wire::FindObjectsRequest request;
  request.session = session;
  if (CK_RV rv = toWireTemplate(templ, count, request.templ); rv != CKR_OK) {
    return rv;
  }
  std::lock_guard sessionLock(state->mutex);
  if (state->findActive) {
    return CKR_OPERATION_ACTIVE;
  }
  wire::FindObjectsReply reply;
  if (CK_RV rv = sessionCall<wire::CallId::FindObjects>(session, request, reply); rv != CKR_OK) {
    return rv;
  }
  state->findActive = true;
  state->found = std::move(reply.objects);
  state->nextFound = 0;
  return CKR_OK;
}

CK_RV Frontend::findObjects(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE_PTR objects, CK_ULONG max,
                            CK_ULONG_PTR count) {
  if (count == nullptr || (objects == nullptr && max > 0)) {
    return CKR_ARGUMENTS_BAD;
  }
  auto state = sessionState(session);
  if (!state) {
    return CKR_SESSION_HANDLE_INVALID;
  }
  std::lock_guard sessionLock(state->mutex);
  if (!state->findActive) {
    return CKR_OPERATION_NOT_INITIALIZED;
  }
  CK_ULONG returned = 0;
  while (returned < max && state->nextFound < state->found.size()) {
    objects[returned++] = state->found[state->nextFound++];
  }
  *count = returned;
  return CKR_OK;
}

CK_RV Frontend::findObjectsFinal(CK_SESSION_HANDLE session) {
  auto state = sessionState(session);
  if (!state) {
    return CKR_SESSION_HANDLE_INVALID;
  }
  std::lock_guard sessionLock(state->mutex);
  if (!state->findActive) {
    return CKR_OPERATION_NOT_INITIALIZED;
  }
  state->findActive = false;
  state->found.clear();
  return CKR_OK;
}

CK_RV Frontend::getAttributeValue(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object, CK_ATTRIBUTE_PTR templ,
                                  CK_ULONG count) {
  if (templ == nullptr && count > 0) {
    return CKR_ARGUMENTS_BAD;
  }
  if (count > wire::kMaxTemplateAttributes) {
    return CKR_ARGUMENTS_BAD;
  }
  auto state = findSession(session);
  if (!state) {
    return CKR_SESSION_HANDLE_INVALID;
  }
  wire::GetAttributeValueRequest request;
  request.session = session;
  request.object = object;
  request.types.reserve(count);
  bool sizeQuery = false;
  for (CK_ULONG i = 0; i < count; ++i) {
    request.types.push_back(templ[i].type);
    sizeQuery = sizeQuery || templ[i].pValue == nullptr;
  }
  // Taken before the round trip: a write that overlaps it makes the kept reply stale.
  const std::uint64_t generation = m_generation;
  wire::GetAttributeValueReply reply;
  bool served = false;
  {
    std::lock_guard keptLock(state->keptMutex);
    auto& kept = state->kept;
    if (kept.valid && kept.generation == generation && kept.object == object && kept.types == request.types) {
      reply.attributes = std::move(kept.attributes);
      served = true;
    }
    kept.valid = false;
  }
  if (!served) {
    if (CK_RV rv = sessionCall<wire::CallId::GetAttributeValue>(session, request, reply); rv != CKR_OK) {
      return rv;
    }
    if (reply.attributes.size() != count) {
      return CKR_DEVICE_ERROR;
    }
  }
  // PKCS#11 2.40 section 5.7: every attribute is processed; the call reports one of the failures.
  CK_RV result = CKR_OK;
  for (CK_ULONG i = 0; i < count; ++i) {
    auto& attribute = templ[i];
    const auto& read = reply.attributes[i];
    if (read.status != CKR_OK) {
      attribute.ulValueLen = CK_UNAVAILABLE_INFORMATION;
      result = static_cast<CK_RV>(read.status);
    } else if (attribute.pValue == nullptr) {
      attribute.ulValueLen = read.value.size();
    } else if (attribute.ulValueLen < read.value.size()) {
      attribute.ulValueLen = CK_UNAVAILABLE_INFORMATION;
      result = CKR_BUFFER_TOO_SMALL;
    } else {
      if (!read.value.empty()) {  // an empty value's data() may be null, which memcpy must not get
        std::memcpy(attribute.pValue, read.value.data(), read.value.size());
      }
      attribute.ulValueLen = read.value.size();
    }
  }
  if (sizeQuery || result == CKR_BUFFER_TOO_SMALL) {
    std::lock_guard keptLock(state->keptMutex);
    state->kept = {true, object, std::move(request.types), std::move(reply.attributes), generation};
  }
  return result;
}

CK_RV Frontend::setAttributeValue(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object, CK_ATTRIBUTE_PTR templ,
                                  CK_ULONG count) {
  wire::SetAttributeValueRequest request;
  request.session = session;
  request.object = object;
  if (CK_RV rv = toWireTemplate(templ, count, request.templ); rv != CKR_OK) {
    return rv;
  }
  wire::Empty reply;
  const CK_RV rv = sessionCall<wire::CallId::SetAttributeValue>(session, request, reply);
  objectsChanged();
  return rv;
}

CK_RV Frontend::createObject(CK_SESSION_HANDLE session, CK_ATTRIBUTE_PTR templ, CK_ULONG count,
                             CK_OBJECT_HANDLE_PTR object) {
  if (object == nullptr) {
    return CKR_ARGUMENTS_BAD;
  }
  wire::CreateObjectRequest request;
  request.session = session;
  CK_RV rv = toWireTemplate(templ, count, request.templ);
  if (rv == CKR_OK) {
    wire::ObjectReply reply;
    rv = sessionCall<wire::CallId::CreateObject>(session, request, reply);
    objectsChanged();
    *object = reply.object;
  }
  wipeTemplate(request.templ);  // an imported key's bytes leave no copy here
  return rv;
}

CK_RV Frontend::destroyObject(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object) {
  wire::Empty reply;
  const CK_RV rv = sessionCall<wire::CallId::DestroyObject>(session, {session, object}, reply);
  objectsChanged();
  std::lock_guard lock(m_mutex);
  std::erase_if(m_checked, [object](const auto& entry) { return std::get<1>(entry) == object; });
  return rv;
}

CK_RV Frontend::copyObject(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object, CK_ATTRIBUTE_PTR templ,
                           CK_ULONG count, CK_OBJECT_HANDLE_PTR newObject) {
  if (newObject == nullptr) {
    return CKR_ARGUMENTS_BAD;
  }
  wire::CopyObjectRequest request;
  request.session = session;
  request.object = object;
  CK_RV rv = toWireTemplate(templ, count, request.templ);
  if (rv == CKR_OK) {
    wire::ObjectReply reply;
    rv = sessionCall<wire::CallId::CopyObject>(session, request, reply);
    objectsChanged();  // a kept attribute reply may no longer be what a read would see
    if (rv == CKR_OK) {
      *newObject = reply.object;
    }
  }
  wipeTemplate(request.templ);
  return rv;
}

CK_RV Frontend::getObjectSize(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object, CK_ULONG_PTR size) {
  if (size == nullptr) {
    return CKR_ARGUMENTS_BAD;
  }
  wire::ObjectSizeReply reply;
  const CK_RV rv = sessionCall<wire::CallId::GetObjectSize>(session, {session, object}, reply);
  if (rv == CKR_OK) {
    *size = static_cast<CK_ULONG>(reply.size);
  }
  return rv;
}

CK_RV Frontend::generateKeyPair(CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism,
                                CK_ATTRIBUTE_PTR publicTemplate, CK_ULONG publicCount,
                                CK_ATTRIBUTE_PTR privateTemplate, CK_ULONG privateCount,
                                CK_OBJECT_HANDLE_PTR publicKey, CK_OBJECT_HANDLE_PTR privateKey) {
  if (mechanism == nullptr || publicKey == nullptr || privateKey == nullptr) {
    return CKR_ARGUMENTS_BAD;
  }
  wire::GenerateKeyPairRequest request;
  request.session = session;
  if (!toWireMechanism(*mechanism, request.mechanism)) {
    return CKR_MECHANISM_PARAM_INVALID;
  }
  if (CK_RV rv = toWireTemplate(publicTemplate, publicCount, request.publicTemplate); rv != CKR_OK) {
    return rv;
  }
  if (CK_RV rv = toWireTemplate(privateTemplate, privateCount, request.privateTemplate); rv != CKR_OK) {
    return rv;
  }
  wire::GenerateKeyPairReply reply;
  const CK_RV rv = sessionCall<wire::CallId::GenerateKeyPair>(session, request, reply);
  objectsChanged();
  if (rv != CKR_OK) {
    return rv;
  }
  *publicKey = reply.publicKey;
  *privateKey = reply.privateKey;
  return CKR_OK;
}

}  // namespace dojang::frontend
