#include "tests/virtual_piv/card_channel.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

namespace dojang::virtual_piv {
namespace {

constexpr std::uint16_t kWrongLength = 0x6700;
constexpr std::size_t kShortMaximum = 256;
constexpr std::size_t kExtendedMaximum = 65536;

struct ParsedApdu {
  Command command;
  bool extended = false;
  std::size_t expected = 0;  // Ne; 0 when the command has no Le field
};

// ISO 7816-3 12.1.3: the four cases, short (one-byte Lc/Le) and extended (00 then two bytes).
std::optional<ParsedApdu> parseApdu(const Bytes& raw) {
  if (raw.size() < 4) {
    return std::nullopt;
  }
  ParsedApdu parsed;
  parsed.command.cla = raw[0];
  parsed.command.ins = raw[1];
  parsed.command.p1 = raw[2];
  parsed.command.p2 = raw[3];
  const std::size_t size = raw.size();
  auto dataFrom = [&](std::size_t offset, std::size_t length) {
    parsed.command.data.assign(raw.begin() + static_cast<std::ptrdiff_t>(offset),
                               raw.begin() + static_cast<std::ptrdiff_t>(offset + length));
  };
  if (size == 4) {
    return parsed;
  }
  if (size == 5) {
    parsed.expected = raw[4] == 0 ? kShortMaximum : raw[4];
    return parsed;
  }
  if (raw[4] != 0) {
    const std::size_t lc = raw[4];
    if (size == 5 + lc) {
      dataFrom(5, lc);
      return parsed;
    }
    if (size == 6 + lc) {
      dataFrom(5, lc);
      parsed.expected = raw[size - 1] == 0 ? kShortMaximum : raw[size - 1];
      return parsed;
    }
    return std::nullopt;
  }
  if (size < 7) {
    return std::nullopt;
  }
  parsed.extended = true;
  const std::size_t first = (std::size_t{raw[5]} << 8) | raw[6];
  if (size == 7) {
    parsed.expected = first == 0 ? kExtendedMaximum : first;
    return parsed;
  }
  if (size == 7 + first) {
    dataFrom(7, first);
    return parsed;
  }
  if (size == 9 + first) {
    dataFrom(7, first);
    const std::size_t le = (std::size_t{raw[size - 2]} << 8) | raw[size - 1];
    parsed.expected = le == 0 ? kExtendedMaximum : le;
    return parsed;
  }
  return std::nullopt;
}

}  // namespace

CardChannel::CardChannel(PivApplet& applet, std::filesystem::path apduLog)
    : m_applet(applet), m_apduLog(std::move(apduLog)) {}

void CardChannel::reset() {
  m_chain.reset();
  m_pending.clear();
}

Bytes CardChannel::transmit(const Bytes& apdu) {
  bool extended = false;
  std::size_t expected = 0;
  Response response = dispatch(apdu, extended, expected);

  // A short APDU gets at most 256 bytes at once; the rest waits for GET RESPONSE (61xx).
  const std::size_t limit = extended ? kExtendedMaximum : kShortMaximum;
  if (response.data.size() > limit) {
    m_pending.assign(response.data.begin() + static_cast<std::ptrdiff_t>(limit), response.data.end());
    response.data.resize(limit);
    response.sw = static_cast<std::uint16_t>(0x6100 | (m_pending.size() > 0xFF ? 0 : m_pending.size()));
  }
  log(apdu, response.sw);
  Bytes out = std::move(response.data);
  out.push_back(static_cast<std::uint8_t>(response.sw >> 8));
  out.push_back(static_cast<std::uint8_t>(response.sw));
  return out;
}

Response CardChannel::dispatch(const Bytes& apdu, bool& extended, std::size_t& expected) {
  auto parsed = parseApdu(apdu);
  if (!parsed) {
    reset();
    return Response{{}, kWrongLength};
  }
  extended = parsed->extended;
  expected = parsed->expected;
  Command& command = parsed->command;

  if ((command.cla & ~0x10) == 0x00 && command.ins == 0xC0) {
    if (m_pending.empty()) {
      return Response{{}, 0x6985};
    }
    const std::size_t count = std::min(m_pending.size(), expected == 0 ? kShortMaximum : expected);
    Response part{Bytes(m_pending.begin(), m_pending.begin() + static_cast<std::ptrdiff_t>(count)), 0x9000};
    m_pending.erase(m_pending.begin(), m_pending.begin() + static_cast<std::ptrdiff_t>(count));
    if (!m_pending.empty()) {
      part.sw = static_cast<std::uint16_t>(0x6100 | (m_pending.size() > 0xFF ? 0 : m_pending.size()));
    }
    return part;
  }
  m_pending.clear();

  // ISO 7816-4 5.3.3: each link of a chain is acknowledged; the last one carries the whole command.
  const bool more = (command.cla & 0x10) != 0;
  command.cla = static_cast<std::uint8_t>(command.cla & ~0x10);
  if (m_chain && (m_chain->ins != command.ins || m_chain->p1 != command.p1 || m_chain->p2 != command.p2 ||
                  m_chain->cla != command.cla)) {
    m_chain.reset();
  }
  if (more) {
    if (!m_chain) {
      m_chain = command;
    } else {
      m_chain->data.insert(m_chain->data.end(), command.data.begin(), command.data.end());
    }
    return Response{{}, 0x9000};
  }
  if (m_chain) {
    m_chain->data.insert(m_chain->data.end(), command.data.begin(), command.data.end());
    command = std::move(*m_chain);
    m_chain.reset();
  }
  return m_applet.process(command);
}

// "00 A4 04 00 lc=5 -> 9000": the header and the status word, one line per APDU received.
void CardChannel::log(const Bytes& apdu, std::uint16_t sw) const {
  if (m_apduLog.empty()) {
    return;
  }
  std::string line = spacedHex(std::span(apdu).first(std::min<std::size_t>(apdu.size(), 4)));
  line += " len=" + std::to_string(apdu.size()) + " -> ";
  char swText[8] = {};
  std::snprintf(swText, sizeof swText, "%04X\n", unsigned{sw});
  line += swText;
  // Opened per line with O_APPEND so a test may truncate the file at any moment.
  const int fd = ::open(m_apduLog.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd >= 0) {
    [[maybe_unused]] const ssize_t written = ::write(fd, line.data(), line.size());
    ::close(fd);
  }
}

}  // namespace dojang::virtual_piv
