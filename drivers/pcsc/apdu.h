// Command and response APDUs (ISO/IEC 7816-4 clause 5) and the exchange rules every card
// application shares: command chaining for data longer than a short APDU holds, GET RESPONSE
// after 61xx, and a resend with the right Le after 6Cxx.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace dojang::pcsc {

using Bytes = std::vector<std::uint8_t>;

struct CommandApdu {
  std::uint8_t cla = 0x00;
  std::uint8_t ins = 0;
  std::uint8_t p1 = 0;
  std::uint8_t p2 = 0;
  Bytes data;
  // Ne, the longest answer wanted; 256 is sent as Le = 00. Empty: no Le field (case 1 or 3).
  std::optional<std::size_t> expected;

  CommandApdu() = default;
  CommandApdu(const CommandApdu&) = default;
  CommandApdu(CommandApdu&&) noexcept = default;
  CommandApdu& operator=(const CommandApdu&) = default;
  CommandApdu& operator=(CommandApdu&&) noexcept = default;
  // Command data may hold a PIN or a cryptogram: wiped, like SecureBytes.
  ~CommandApdu();

  // The short-APDU encoding; data longer than 255 bytes is for exchange() to chain.
  [[nodiscard]] Bytes encode() const;
};

struct ResponseApdu {
  Bytes data;
  std::uint16_t status = 0;

  [[nodiscard]] bool ok() const noexcept { return status == 0x9000; }
  [[nodiscard]] std::uint8_t sw1() const noexcept { return static_cast<std::uint8_t>(status >> 8); }
  [[nodiscard]] std::uint8_t sw2() const noexcept { return static_cast<std::uint8_t>(status & 0xff); }
  // Splits the card's answer into data and SW1-SW2; throws Error(CKR_DEVICE_ERROR) when it is
  // shorter than the status word.
  static ResponseApdu parse(std::span<const std::uint8_t> answer);
};

// One raw exchange with a card: a command APDU out, the answer (data and SW1-SW2) back.
// pcsc::CardTransaction is the real one; unit tests use a scripted one.
class ApduChannel {
 public:
  ApduChannel() = default;
  ApduChannel(const ApduChannel&) = delete;
  ApduChannel& operator=(const ApduChannel&) = delete;
  virtual ~ApduChannel() = default;
  virtual Bytes transmit(std::span<const std::uint8_t> command) = 0;
};

// Sends `command`, chaining it (CLA bit 0x10, ISO 7816-4 5.1.1.1) when its data does not fit one
// short APDU, and collects the whole answer: 61xx is followed by GET RESPONSE (7816-4 7.6.1) until
// the card has nothing more, 6Cxx by the same command with Le = xx. The final status word is
// returned as the card gave it; only a broken exchange throws.
ResponseApdu exchange(ApduChannel& channel, const CommandApdu& command);

// "6982" style text for messages.
[[nodiscard]] std::string statusText(std::uint16_t status);

}  // namespace dojang::pcsc
