// Service's handlers for objects and keys: each converts its wire request, asks TokenAccess (where
// dojang's policy is) and converts the answer back.
#include <string>

#include "src/common/errors/error.h"
#include "src/common/wire/wire_limits.h"
#include "src/daemon/service.h"
#include "src/daemon/token_access.h"
#include "src/daemon/wire_to_token.h"

namespace dojang::daemon {

namespace {

// CheckOperation names a key operation: Digest, or a byte that names no kind, is refused.
OperationKind keyOperationOf(wire::Operation operation) {
  if (!keyUsageAttribute(operation)) {
    fail(CKR_ARGUMENTS_BAD, "unknown operation");
  }
  return operation;
}

}  // namespace

void Service::FindObjects(CallContext& context, const wire::FindObjectsRequest& in,
                          wire::FindObjectsReply& out) {
  auto session = context.client->session(in.session);
  const auto prompt = promptAccess(context);
  out.objects = TokenAccess(*context.client, *session, &prompt).find(toAttributes(in.templ));
}

void Service::GetAttributeValue(CallContext& context, const wire::GetAttributeValueRequest& in,
                                wire::GetAttributeValueReply& out) {
  auto session = context.client->session(in.session);
  const auto prompt = promptAccess(context);
  if (in.types.size() > wire::kMaxTemplateAttributes) {
    fail(CKR_ARGUMENTS_BAD,
         "more than " + std::to_string(wire::kMaxTemplateAttributes) + " attributes asked for");
  }
  auto reads = TokenAccess(*context.client, *session, &prompt).read(in.object, in.types);
  out.attributes.reserve(reads.size());
  for (auto& read : reads) {
    out.attributes.push_back({read.type, read.status, std::move(read.value)});
  }
}

void Service::SetAttributeValue(CallContext& context, const wire::SetAttributeValueRequest& in,
                                wire::Empty&) {
  auto session = context.client->session(in.session);
  const auto prompt = promptAccess(context);
  TokenAccess(*context.client, *session, &prompt).write(in.object, toAttributes(in.templ));
}

void Service::CreateObject(CallContext& context, const wire::CreateObjectRequest& in,
                           wire::ObjectReply& out) {
  auto session = context.client->session(in.session);
  const auto prompt = promptAccess(context);
  auto templ = toAttributes(in.templ);
  const WipedOnExit wiped(templ);  // whichever check refuses it, the key bytes die here
  out.object = TokenAccess(*context.client, *session, &prompt).create(templ);
}

void Service::DestroyObject(CallContext& context, const wire::ObjectRequest& in, wire::Empty&) {
  auto session = context.client->session(in.session);
  const auto prompt = promptAccess(context);
  TokenAccess(*context.client, *session, &prompt).destroy(in.object);
}

void Service::GetObjectSize(CallContext& context, const wire::ObjectRequest& in, wire::ObjectSizeReply& out) {
  auto session = context.client->session(in.session);
  const auto prompt = promptAccess(context);
  out.size = TokenAccess(*context.client, *session, &prompt).objectSize(in.object);
}

void Service::CopyObject(CallContext& context, const wire::CopyObjectRequest& in, wire::ObjectReply& out) {
  auto session = context.client->session(in.session);
  const auto prompt = promptAccess(context);
  out.object = TokenAccess(*context.client, *session, &prompt).copy(in.object, toAttributes(in.templ));
}

void Service::GenerateKeyPair(CallContext& context, const wire::GenerateKeyPairRequest& in,
                              wire::GenerateKeyPairReply& out) {
  auto session = context.client->session(in.session);
  const auto prompt = promptAccess(context);
  TokenAccess access(*context.client, *session, &prompt);
  access.requireLogin();  // first: converting the mechanism may fail, and the login comes first
  auto publicTemplate = toAttributes(in.publicTemplate);
  auto privateTemplate = toAttributes(in.privateTemplate);
  const auto pair = access.generateKeyPair(toMechanism(in.mechanism), publicTemplate, privateTemplate);
  out.publicKey = pair.publicKey;
  out.privateKey = pair.privateKey;
}

void Service::CheckOperation(CallContext& context, const wire::CheckOperationRequest& in, wire::Empty&) {
  auto session = context.client->session(in.session);
  const auto prompt = promptAccess(context);
  const OperationKind kind = keyOperationOf(in.operation);
  TokenAccess(*context.client, *session, &prompt).checkKeyOperation(kind, toMechanism(in.mechanism), in.key);
}

void Service::Sign(CallContext& context, const wire::KeyOperationRequest& in, wire::DataReply& out) {
  auto session = context.client->session(in.session);
  const auto prompt = promptAccess(context);
  out.data = TokenAccess(*context.client, *session, &prompt).sign(toMechanism(in.mechanism), in.key, in.data);
}

void Service::Verify(CallContext& context, const wire::VerifyRequest& in, wire::Empty&) {
  auto session = context.client->session(in.session);
  const auto prompt = promptAccess(context);
  TokenAccess(*context.client, *session, &prompt)
      .verify(toMechanism(in.mechanism), in.key, in.data, in.signature);
}

void Service::Decrypt(CallContext& context, const wire::KeyOperationRequest& in, wire::DataReply& out) {
  auto session = context.client->session(in.session);
  const auto prompt = promptAccess(context);
  out.data =
      TokenAccess(*context.client, *session, &prompt).decrypt(toMechanism(in.mechanism), in.key, in.data);
}

void Service::Digest(CallContext& context, const wire::DigestRequest& in, wire::DataReply& out) {
  auto session = context.client->session(in.session);
  const auto prompt = promptAccess(context);
  out.data = TokenAccess(*context.client, *session, &prompt).digest(toMechanism(in.mechanism), in.data);
}

void Service::GenerateRandom(CallContext& context, const wire::GenerateRandomRequest& in,
                             wire::DataReply& out) {
  auto session = context.client->session(in.session);
  const auto prompt = promptAccess(context);
  if (in.length > wire::kMaxRandomBytes) {
    fail(CKR_ARGUMENTS_BAD, "too many random bytes asked for");
  }
  out.data = TokenAccess(*context.client, *session, &prompt).random(in.length);
}

}  // namespace dojang::daemon
