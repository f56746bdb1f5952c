// throwTransportFailure (foreign_errors.h), apart from the rest so that it alone needs wire/.
#include <exception>
#include <string>

#include "src/common/errors/foreign_errors.h"
#include "src/common/wire/codec.h"
#include "src/common/wire/transport.h"

namespace dojang {

void throwTransportFailure(std::string_view peer, CallSite where) {
  const std::string who(peer);
  try {
    throw;
  } catch (const wire::TransportTimedOut& error) {
    throw Error(CKR_DEVICE_ERROR, ErrorKind::Retryable, who + " did not answer in time: " + error.what(),
                where);
  } catch (const wire::TransportClosed& error) {
    throw Error(CKR_DEVICE_ERROR, ErrorKind::Fatal, who + " closed the connection: " + error.what(), where);
  } catch (const wire::MalformedFrame& error) {
    throw Error(CKR_DEVICE_ERROR, ErrorKind::Fatal, who + " sent a malformed reply: " + error.what(), where);
  }
}

}  // namespace dojang
