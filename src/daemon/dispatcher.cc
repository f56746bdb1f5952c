#include "src/daemon/dispatcher.h"

#include <new>

#include "src/common/errors/error.h"
#include "src/common/wire/codec.h"
#include "src/daemon/log.h"

namespace dojang::daemon {

namespace {

template <wire::CallId id, class Method>
void run(Service& service, Method method, CallContext& context, wire::Decoder& decoder, wire::Bytes& frame) {
  using Call = wire::Call<id>;
  typename Call::Request request{};
  typename Call::Reply reply{};
  CK_RV rv = CKR_OK;
  try {
    decoder.read(request);
    decoder.expectEnd();
    (service.*method)(context, request, reply);
  } catch (const wire::MalformedFrame& error) {
    logWarning(std::string("malformed ") + Call::kName + " request: " + error.what());
    rv = CKR_ARGUMENTS_BAD;
  } catch (const Error& error) {
    rv = error.rv();
    if (error.kind() == ErrorKind::Fatal) {
      logWarning(std::string(Call::kName) + ": " + error.what());
    } else {
      logDebug(std::string(Call::kName) + ": " + error.what());
    }
  }
  wire::encodeReply(rv, &reply, frame);
  // Requests can carry PINs and key material to import; their buffers die wiped.
  if constexpr (requires { request.pin; }) {
    wire::wipe(request.pin);
  }
  if constexpr (requires { request.newPin; }) {
    wire::wipe(request.oldPin);
    wire::wipe(request.newPin);
  }
  if constexpr (requires { request.templ; }) {
    for (auto& attribute : request.templ) {
      wire::wipe(attribute.value);
    }
  }
  if constexpr (requires { request.privateTemplate; }) {
    for (auto& attribute : request.privateTemplate) {
      wire::wipe(attribute.value);
    }
  }
}

}  // namespace

void dispatch(Service& service, CallContext& context, std::span<const std::uint8_t> payload, wire::Bytes& frame) {
  try {
    wire::Decoder decoder(payload);
    std::uint16_t id = 0;
    decoder.read(id);
    switch (id) {
#define DOJANG_DISPATCH_CALL(number, name, request, reply)                          \
  case number:                                                                      \
    run<wire::CallId::name>(service, &Service::name, context, decoder, frame);      \
    return;
      DOJANG_WIRE_CALLS(DOJANG_DISPATCH_CALL)
#undef DOJANG_DISPATCH_CALL
      default:
        wire::encodeReply<wire::Empty>(CKR_FUNCTION_NOT_SUPPORTED, nullptr, frame);
        return;
    }
  } catch (const wire::MalformedFrame&) {
    wire::encodeReply<wire::Empty>(CKR_ARGUMENTS_BAD, nullptr, frame);
  } catch (const std::bad_alloc&) {
    wire::encodeReply<wire::Empty>(CKR_HOST_MEMORY, nullptr, frame);
  } catch (const std::exception& error) {
    logError(std::string("unexpected failure: ") + error.what());
    wire::encodeReply<wire::Empty>(CKR_GENERAL_ERROR, nullptr, frame);
  }
}

}  // namespace dojang::daemon
