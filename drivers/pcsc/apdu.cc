#include "drivers/pcsc/apdu.h"

#include <cstdio>
#include <cstring>

#include "src/common/errors/error.h"

namespace dojang::pcsc {

namespace {
constexpr std::size_t kShortDataMax = 255;
// A card that keeps answering 61xx or 6Cxx is broken; stop long before memory runs out.
constexpr std::size_t kMaxAnswer = 64 * 1024;
constexpr int kMaxResends = 4;
}  // namespace

CommandApdu::~CommandApdu() {
  if (!data.empty()) {
    explicit_bzero(data.data(), data.size());
  }
}

Bytes CommandApdu::encode() const {
  if (data.size() > kShortDataMax) {
    fail(CKR_GENERAL_ERROR, "APDU data longer than a short APDU; exchange() chains it");
  }
  Bytes out{cla, ins, p1, p2};
  if (!data.empty()) {
    out.push_back(static_cast<std::uint8_t>(data.size()));
    out.insert(out.end(), data.begin(), data.end());
  }
  if (expected) {
    out.push_back(*expected >= 256 ? std::uint8_t{0} : static_cast<std::uint8_t>(*expected));
  }
  return out;
}

ResponseApdu ResponseApdu::parse(std::span<const std::uint8_t> answer) {
  if (answer.size() < 2) {
    fail(CKR_DEVICE_ERROR, "card answer shorter than a status word");
  }
  ResponseApdu response;
  response.data.assign(answer.begin(), answer.end() - 2);
  response.status = static_cast<std::uint16_t>((answer[answer.size() - 2] << 8) | answer[answer.size() - 1]);
  return response;
}

std::string statusText(std::uint16_t status) {
  char text[8];
  std::snprintf(text, sizeof text, "%04X", static_cast<unsigned>(status));
  return text;
}

namespace {

ResponseApdu sendOne(ApduChannel& channel, const CommandApdu& command) {
  Bytes encoded = command.encode();
  const Bytes answer = channel.transmit(encoded);
  explicit_bzero(encoded.data(), encoded.size());
  return ResponseApdu::parse(answer);
}

// The last (or only) part of a command, with 6Cxx and 61xx handled.
ResponseApdu sendCollecting(ApduChannel& channel, CommandApdu command) {
  ResponseApdu response = sendOne(channel, command);
  for (int resend = 0; response.sw1() == 0x6C && resend < kMaxResends; ++resend) {
    // Wrong Le: the card says how many bytes it has (00 = 256).
    command.expected = response.sw2() == 0 ? 256 : response.sw2();
    response = sendOne(channel, command);
  }
  Bytes collected = std::move(response.data);
  while (response.sw1() == 0x61) {
    CommandApdu getResponse;
    getResponse.cla = static_cast<std::uint8_t>(command.cla & ~0x10);
    getResponse.ins = 0xC0;  // GET RESPONSE, ISO 7816-4 7.6.1
    getResponse.expected = response.sw2() == 0 ? 256 : response.sw2();
    response = sendOne(channel, getResponse);
    collected.insert(collected.end(), response.data.begin(), response.data.end());
    if (collected.size() > kMaxAnswer) {
      fail(CKR_DEVICE_ERROR, "card answer longer than " + std::to_string(kMaxAnswer) + " bytes");
    }
  }
  response.data = std::move(collected);
  return response;
}

}  // namespace

ResponseApdu exchange(ApduChannel& channel, const CommandApdu& command) {
  std::span<const std::uint8_t> rest(command.data);
  while (rest.size() > kShortDataMax) {
    CommandApdu part = command;
    part.cla = static_cast<std::uint8_t>(command.cla | 0x10);
    part.data.assign(rest.begin(), rest.begin() + kShortDataMax);
    part.expected.reset();
    const ResponseApdu response = sendOne(channel, part);
    if (!response.ok()) {
      return response;  // the card refused the chain; its reason is the answer
    }
    rest = rest.subspan(kShortDataMax);
  }
  CommandApdu last = command;
  last.data.assign(rest.begin(), rest.end());
  return sendCollecting(channel, std::move(last));
}

}  // namespace dojang::pcsc
