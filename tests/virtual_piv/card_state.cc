#include "tests/virtual_piv/card_state.h"

#include <fcntl.h>
#include <openssl/rand.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <stdexcept>

namespace dojang::virtual_piv {
namespace {

constexpr std::string_view kMagic = "dojang-virtual-piv-state 1";

// SP 800-73-4 Part 1 3.1.2: CHUID with a FASC-N (tag 30), a GUID (34), an expiration date (35), an
// empty signature (3E) and the error detection code (FE). The GUID gives OpenSC a card serial.
Bytes makeChuid() {
  Bytes guid(16);
  if (RAND_bytes(guid.data(), static_cast<int>(guid.size())) != 1) {
    throw std::runtime_error("RAND_bytes failed");
  }
  Bytes fascn = {0xD4, 0xE7, 0x39, 0xDA, 0x73, 0x9C, 0xED, 0x39, 0xCE, 0x73, 0x9D, 0x83, 0x68,
                 0x58, 0x21, 0x08, 0x42, 0x10, 0x84, 0x21, 0xC8, 0x42, 0x10, 0xC3, 0xEB};
  const std::string expiry = "20991231";
  Bytes chuid;
  appendTlv(chuid, 0x30, fascn);
  appendTlv(chuid, 0x34, guid);
  appendTlv(chuid, 0x35, Bytes(expiry.begin(), expiry.end()));
  appendTlv(chuid, 0x3E, Bytes{});
  appendTlv(chuid, 0xFE, Bytes{});
  return chuid;
}

ReferenceData parseReference(std::istringstream& fields) {
  std::string value;
  ReferenceData data;
  fields >> value >> data.triesLeft >> data.maxTries;
  auto bytes = parseHex(value);
  if (!fields || !bytes || bytes->size() != 8) {
    throw std::runtime_error("bad PIN or PUK line in the card state");
  }
  data.value = std::move(*bytes);
  return data;
}

}  // namespace

Bytes padReferenceData(std::string_view text) {
  Bytes padded(text.begin(), text.end());
  padded.resize(8, 0xFF);
  return padded;
}

PinPolicy defaultPinPolicy(std::uint8_t keyReference) {
  switch (keyReference) {
    case 0x9C:
      return PinPolicy::Always;
    case 0x9E:
      return PinPolicy::Never;
    default:
      return PinPolicy::Once;
  }
}

CardState CardState::fresh(std::uint8_t managementAlgorithm, const Bytes& managementKey) {
  CardState state;
  state.pin.value = padReferenceData("123456");
  state.puk.value = padReferenceData("12345678");
  state.managementAlgorithm = managementAlgorithm;
  state.managementKey = managementKey;
  state.objects[0x5FC102] = makeChuid();
  return state;
}

std::optional<CardState> CardState::load(const std::filesystem::path& file) {
  std::ifstream in(file);
  if (!in) {
    if (!std::filesystem::exists(file)) {
      return std::nullopt;
    }
    throw std::runtime_error("cannot read " + file.string());
  }
  std::string line;
  if (!std::getline(in, line) || line != kMagic) {
    throw std::runtime_error(file.string() + " is not a virtual PIV card state");
  }
  CardState state;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string kind;
    fields >> kind;
    if (kind == "pin") {
      state.pin = parseReference(fields);
    } else if (kind == "puk") {
      state.puk = parseReference(fields);
    } else if (kind == "management") {
      unsigned algorithm = 0;
      std::string key;
      fields >> std::hex >> algorithm >> key;
      auto bytes = parseHex(key);
      if (!fields || !bytes) {
        throw std::runtime_error("bad management key line in the card state");
      }
      state.managementAlgorithm = static_cast<std::uint8_t>(algorithm);
      state.managementKey = std::move(*bytes);
    } else if (kind == "key") {
      unsigned slot = 0;
      unsigned algorithm = 0;
      unsigned policy = 0;
      std::string der;
      fields >> std::hex >> slot >> algorithm >> policy >> der;
      auto bytes = parseHex(der);
      if (!fields || !bytes || policy < 1 || policy > 3) {
        throw std::runtime_error("bad key line in the card state");
      }
      state.keys[static_cast<std::uint8_t>(slot)] = CardKey{static_cast<std::uint8_t>(algorithm),
                                                             static_cast<PinPolicy>(policy), std::move(*bytes)};
    } else if (kind == "object") {
      unsigned tag = 0;
      std::string contents;
      fields >> std::hex >> tag >> contents;
      auto bytes = parseHex(contents);
      if (fields.fail() || !bytes) {
        throw std::runtime_error("bad object line in the card state");
      }
      state.objects[tag] = std::move(*bytes);
    } else if (!kind.empty()) {
      throw std::runtime_error("unknown line in the card state: " + kind);
    }
  }
  return state;
}

void CardState::save(const std::filesystem::path& file) const {
  std::ostringstream out;
  out << kMagic << '\n';
  out << "pin " << hexText(pin.value) << ' ' << pin.triesLeft << ' ' << pin.maxTries << '\n';
  out << "puk " << hexText(puk.value) << ' ' << puk.triesLeft << ' ' << puk.maxTries << '\n';
  out << "management " << std::hex << unsigned{managementAlgorithm} << ' ' << hexText(managementKey) << '\n';
  for (const auto& [slot, key] : keys) {
    out << "key " << unsigned{slot} << ' ' << unsigned{key.algorithm} << ' '
        << static_cast<unsigned>(key.pinPolicy) << ' ' << hexText(key.privateKeyDer) << '\n';
  }
  for (const auto& [tag, contents] : objects) {
    out << "object " << tag << ' ' << hexText(contents) << '\n';  // never empty: PUT DATA of 53 00 deletes
  }
  const std::string text = out.str();
  const std::filesystem::path temporary = file.string() + ".tmp";
  const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    throw std::runtime_error("cannot write " + temporary.string());
  }
  std::size_t written = 0;
  while (written < text.size()) {
    const ssize_t n = ::write(fd, text.data() + written, text.size() - written);
    if (n <= 0) {
      ::close(fd);
      throw std::runtime_error("cannot write " + temporary.string());
    }
    written += static_cast<std::size_t>(n);
  }
  ::fsync(fd);
  ::close(fd);
  std::filesystem::rename(temporary, file);
}

}  // namespace dojang::virtual_piv
