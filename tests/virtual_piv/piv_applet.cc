#include "tests/virtual_piv/piv_applet.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <array>

#include "tests/virtual_piv/card_crypto.h"

namespace dojang::virtual_piv {
namespace {

// SP 800-73-4 Part 2 table 3 / ISO 7816-4 status words used below.
constexpr std::uint16_t kOk = 0x9000;
constexpr std::uint16_t kSecurityStatusNotSatisfied = 0x6982;
constexpr std::uint16_t kAuthenticationBlocked = 0x6983;
constexpr std::uint16_t kWrongData = 0x6A80;
constexpr std::uint16_t kNotFound = 0x6A82;
constexpr std::uint16_t kWrongP1P2 = 0x6A86;
constexpr std::uint16_t kReferenceNotFound = 0x6A88;
constexpr std::uint16_t kWrongLength = 0x6700;
constexpr std::uint16_t kInsNotSupported = 0x6D00;

// The PIV AID with its version (SP 800-73-4 Part 1 2.2); SELECT may name any prefix of five or more.
constexpr std::array<std::uint8_t, 11> kPivAid = {0xA0, 0x00, 0x00, 0x03, 0x08, 0x00,
                                                  0x00, 0x10, 0x00, 0x01, 0x00};
constexpr std::uint32_t kDiscoveryTag = 0x7E;
constexpr std::uint8_t kManagementKeyReference = 0x9B;

Response status(std::uint16_t sw) {
  return Response{{}, sw};
}

bool isKeySlot(std::uint8_t reference) {
  return reference == 0x9A || reference == 0x9C || reference == 0x9D || reference == 0x9E ||
         (reference >= 0x82 && reference <= 0x95);
}

// PUT DATA accepts the PIV data objects (5FC101..5FC123) and YubiKey's vendor objects (5FFFxx).
bool isWritableObject(std::uint32_t tag) {
  return (tag >= 0x5FC101 && tag <= 0x5FC123) || (tag >= 0x5FFF00 && tag <= 0x5FFFFF);
}

// SP 800-73-4 Part 2 3.1.4: the tag list's one tag, as a number.
std::optional<std::uint32_t> requestedTag(const Bytes& data) {
  const auto items = parseTlvs(data);
  if (!items || items->empty() || (*items)[0].tag != 0x5C || (*items)[0].value.empty() ||
      (*items)[0].value.size() > 3) {
    return std::nullopt;
  }
  std::uint32_t tag = 0;
  for (const auto byte : (*items)[0].value) {
    tag = (tag << 8) | byte;
  }
  return tag;
}

// PIN and PUK: 6 to 8 characters padded with FF (SP 800-73-4 Part 2 2.4.3).
bool isWellFormedReferenceData(const Bytes& value) {
  if (value.size() != 8) {
    return false;
  }
  const auto padding = std::find(value.begin(), value.end(), 0xFF);
  const auto length = padding - value.begin();
  return length >= 6 && std::all_of(padding, value.end(), [](std::uint8_t byte) { return byte == 0xFF; });
}

bool sameBytes(const Bytes& a, const Bytes& b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

Bytes dynamicAuthenticationTemplate(std::uint32_t tag, const Bytes& value) {
  return tlv(0x7C, tlv(tag, value));
}

Bytes discoveryObject() {
  Bytes body;
  appendTlv(body, 0x4F, kPivAid);
  // PIN usage policy: the PIV Card Application PIN only, no global PIN (Part 1 3.3.2).
  appendTlv(body, 0x5F2F, Bytes{0x40, 0x00});
  return tlv(kDiscoveryTag, body);
}

Bytes applicationPropertyTemplate() {
  Bytes body;
  appendTlv(body, 0x4F, std::span(kPivAid).subspan(5));  // the PIX with the version
  appendTlv(body, 0x79, tlv(0x4F, std::span(kPivAid).first(5)));
  const std::string label = "dojang virtual PIV";
  appendTlv(body, 0x50, Bytes(label.begin(), label.end()));
  Bytes algorithms;
  for (const std::uint8_t id :
       {algorithm::kTripleDes, algorithm::kAes128, algorithm::kAes192, algorithm::kAes256,
        algorithm::kRsa1024, algorithm::kRsa2048, algorithm::kEccP256, algorithm::kEccP384}) {
    appendTlv(algorithms, 0x80, Bytes{id});
  }
  appendTlv(algorithms, 0x06, Bytes{0x00});
  appendTlv(body, 0xAC, algorithms);
  return tlv(0x61, body);
}

}  // namespace

PivApplet::PivApplet(CardState& state, std::function<void()> persist, std::optional<YubicoIdentity> yubico,
                     bool hasOpenPgp)
    : m_state(state), m_persist(std::move(persist)), m_yubico(yubico), m_hasOpenPgp(hasOpenPgp) {}

void PivApplet::resetSecurityStatus() {
  m_pinVerified = false;
  m_pinAlwaysGranted = false;
  m_managementAuthenticated = false;
  m_witness.clear();
  m_challenge.clear();
  m_pivSelected = true;  // selected again at power-on
}

Response PivApplet::process(const Command& command) {
  if (command.cla != 0x00) {
    return status(0x6E00);
  }
  if (command.ins == 0xA4) {
    return select(command);
  }
  if (!m_pivSelected) {
    return status(kInsNotSupported);  // the other application does not know PIV's commands
  }
  switch (command.ins) {
    case 0xCB:
      return getData(command);
    case 0xDB:
      return putData(command);
    case 0x20:
      return verify(command);
    case 0x24:
      return changeReferenceData(command);
    case 0x2C:
      return resetRetryCounter(command);
    case 0x87:
      return generalAuthenticate(command);
    case 0x47:
      return generateKeyPair(command);
    default:
      break;
  }
  if (m_yubico) {
    switch (command.ins) {
      case 0xFD:
        return Response{{m_yubico->major, m_yubico->minor, m_yubico->patch}, kOk};
      case 0xF8: {
        const std::uint32_t serial = m_yubico->serial;
        return Response{{static_cast<std::uint8_t>(serial >> 24), static_cast<std::uint8_t>(serial >> 16),
                         static_cast<std::uint8_t>(serial >> 8), static_cast<std::uint8_t>(serial)},
                        kOk};
      }
      case 0xFF:
        return setManagementKey(command);
      default:
        break;
    }
  }
  return status(kInsNotSupported);
}

// SP 800-73-4 Part 2 3.1.1. Other applications (OpenSC probes CAC, OpenPGP and others) are not
// found and leave the PIV application selected, as on a card that has only PIV.
Response PivApplet::select(const Command& command) {
  if (command.p1 != 0x04 || command.p2 != 0x00) {
    return status(kWrongP1P2);
  }
  static constexpr std::array<std::uint8_t, 6> kOpenPgpAid{0xD2, 0x76, 0x00, 0x01, 0x24, 0x01};
  if (m_hasOpenPgp && command.data.size() >= kOpenPgpAid.size() &&
      std::equal(kOpenPgpAid.begin(), kOpenPgpAid.end(), command.data.begin())) {
    resetSecurityStatus();  // leaving PIV ends its security status
    m_pivSelected = false;
    return status(kOk);
  }
  if (command.data.size() < 5 || command.data.size() > kPivAid.size() ||
      !std::equal(command.data.begin(), command.data.end(), kPivAid.begin())) {
    return status(kNotFound);
  }
  if (!m_pivSelected) {
    resetSecurityStatus();
  }
  m_pivSelected = true;
  return Response{applicationPropertyTemplate(), kOk};
}

// SP 800-73-4 Part 2 3.1.2: 5C {tag} in, 53 {contents} out (the discovery object is its own 7E).
Response PivApplet::getData(const Command& command) const {
  if (command.p1 != 0x3F || command.p2 != 0xFF) {
    return status(kWrongP1P2);
  }
  const auto tag = requestedTag(command.data);
  if (!tag) {
    return status(kWrongData);
  }
  if (*tag == kDiscoveryTag) {
    return Response{discoveryObject(), kOk};
  }
  const auto found = m_state.objects.find(*tag);
  if (found == m_state.objects.end()) {
    return status(kNotFound);
  }
  return Response{tlv(0x53, found->second), kOk};
}

// SP 800-73-4 Part 2 3.2.2: 5C {tag} 53 {contents}; needs the management key. 53 00 deletes.
Response PivApplet::putData(const Command& command) {
  if (command.p1 != 0x3F || command.p2 != 0xFF) {
    return status(kWrongP1P2);
  }
  if (!m_managementAuthenticated) {
    return status(kSecurityStatusNotSatisfied);
  }
  const auto items = parseTlvs(command.data);
  const auto tag = requestedTag(command.data);
  if (!items || !tag || items->size() != 2 || (*items)[1].tag != 0x53) {
    return status(kWrongData);
  }
  if (!isWritableObject(*tag)) {
    return status(kNotFound);
  }
  if ((*items)[1].value.empty()) {
    m_state.objects.erase(*tag);
  } else {
    m_state.objects[*tag] = (*items)[1].value;
  }
  m_persist();
  return status(kOk);
}

std::uint16_t PivApplet::checkReferenceData(ReferenceData& reference, const Bytes& candidate) {
  if (reference.triesLeft <= 0) {
    return kAuthenticationBlocked;
  }
  if (sameBytes(reference.value, candidate)) {
    if (reference.triesLeft != reference.maxTries) {
      reference.triesLeft = reference.maxTries;
      m_persist();
    }
    return kOk;
  }
  --reference.triesLeft;
  m_persist();
  return static_cast<std::uint16_t>(0x63C0 | reference.triesLeft);
}

// SP 800-73-4 Part 2 3.2.1. Empty data asks for the status; P1 FF ends the verification.
Response PivApplet::verify(const Command& command) {
  if (command.p2 != 0x80) {
    return status(command.p2 == 0x00 || command.p2 == 0x81 ? kReferenceNotFound : kWrongP1P2);
  }
  if (command.p1 == 0xFF && command.data.empty()) {
    m_pinVerified = false;
    m_pinAlwaysGranted = false;
    return status(kOk);
  }
  if (command.p1 != 0x00) {
    return status(kWrongP1P2);
  }
  if (command.data.empty()) {
    if (m_state.pin.triesLeft <= 0) {
      return status(kAuthenticationBlocked);
    }
    return status(m_pinVerified ? kOk : static_cast<std::uint16_t>(0x63C0 | m_state.pin.triesLeft));
  }
  if (command.data.size() != 8) {
    return status(kWrongLength);
  }
  const std::uint16_t sw = checkReferenceData(m_state.pin, command.data);
  m_pinVerified = sw == kOk;
  m_pinAlwaysGranted = m_pinVerified;
  return status(sw);
}

// SP 800-73-4 Part 2 3.2.3: old value and new value, 8 bytes each, for the PIN (80) or PUK (81).
Response PivApplet::changeReferenceData(const Command& command) {
  if (command.p1 != 0x00 || (command.p2 != 0x80 && command.p2 != 0x81)) {
    return status(kWrongP1P2);
  }
  if (command.data.size() != 16) {
    return status(kWrongLength);
  }
  ReferenceData& reference = command.p2 == 0x80 ? m_state.pin : m_state.puk;
  const Bytes current(command.data.begin(), command.data.begin() + 8);
  const Bytes replacement(command.data.begin() + 8, command.data.end());
  const std::uint16_t sw = checkReferenceData(reference, current);
  if (sw != kOk) {
    if (command.p2 == 0x80) {
      m_pinVerified = false;
    }
    return status(sw);
  }
  if (!isWellFormedReferenceData(replacement)) {
    return status(kWrongData);
  }
  reference.value = replacement;
  m_persist();
  return status(kOk);
}

// SP 800-73-4 Part 2 3.2.4: the PUK, then the new PIN; the PIN's counter starts again.
Response PivApplet::resetRetryCounter(const Command& command) {
  if (command.p1 != 0x00 || command.p2 != 0x80) {
    return status(kWrongP1P2);
  }
  if (command.data.size() != 16) {
    return status(kWrongLength);
  }
  const Bytes puk(command.data.begin(), command.data.begin() + 8);
  const Bytes replacement(command.data.begin() + 8, command.data.end());
  const std::uint16_t sw = checkReferenceData(m_state.puk, puk);
  if (sw != kOk) {
    return status(sw);
  }
  if (!isWellFormedReferenceData(replacement)) {
    return status(kWrongData);
  }
  m_state.pin.value = replacement;
  m_state.pin.triesLeft = m_state.pin.maxTries;
  m_pinVerified = false;
  m_persist();
  return status(kOk);
}

// SP 800-73-4 Part 2 3.2.4: P1 the algorithm, P2 the key reference, data a dynamic
// authentication template 7C.
Response PivApplet::generalAuthenticate(const Command& command) {
  const auto outer = parseTlvs(command.data);
  if (!outer || outer->size() != 1 || (*outer)[0].tag != 0x7C) {
    return status(kWrongData);
  }
  const auto items = parseTlvs((*outer)[0].value);
  if (!items) {
    return status(kWrongData);
  }
  if (command.p2 == kManagementKeyReference) {
    return authenticateManagementKey(command, *items);
  }
  return useKey(command, *items);
}

// Part 2 appendix A.1/A.2: mutual authentication (80 witness, then 80 decrypted witness with 81
// challenge, answered 82) and external authentication (81 challenge requested, answered 82).
Response PivApplet::authenticateManagementKey(const Command& command, const std::vector<TlvItem>& items) {
  const std::uint8_t id = m_state.managementAlgorithm;
  if (command.p1 != id) {
    return status(kWrongP1P2);
  }
  const std::size_t block = managementBlockLength(id);
  const TlvItem* witness = findTlv(items, 0x80);
  const TlvItem* challenge = findTlv(items, 0x81);
  const TlvItem* response = findTlv(items, 0x82);
  auto cipher = [&](const Bytes& input, bool encrypt) {
    return managementCipher(id, m_state.managementKey, input, encrypt).value_or(Bytes{});
  };

  if (witness != nullptr && witness->value.empty() && challenge == nullptr && response == nullptr) {
    m_managementAuthenticated = false;
    m_challenge.clear();
    m_witness = randomBytes(block);
    return Response{dynamicAuthenticationTemplate(0x80, cipher(m_witness, true)), kOk};
  }
  if (witness != nullptr && challenge != nullptr && challenge->value.size() == block) {
    const bool matches = !m_witness.empty() && sameBytes(witness->value, m_witness);
    m_witness.clear();
    if (!matches) {
      return status(kSecurityStatusNotSatisfied);
    }
    m_managementAuthenticated = true;
    return Response{dynamicAuthenticationTemplate(0x82, cipher(challenge->value, true)), kOk};
  }
  if (challenge != nullptr && challenge->value.empty() && witness == nullptr && response == nullptr) {
    m_managementAuthenticated = false;
    m_witness.clear();
    m_challenge = randomBytes(block);
    return Response{dynamicAuthenticationTemplate(0x81, m_challenge), kOk};
  }
  if (response != nullptr && witness == nullptr && challenge == nullptr) {
    const bool matches = !m_challenge.empty() && sameBytes(response->value, cipher(m_challenge, true));
    m_challenge.clear();
    if (!matches) {
      return status(kSecurityStatusNotSatisfied);
    }
    m_managementAuthenticated = true;
    return status(kOk);
  }
  return status(kWrongData);
}

// Signing or decryption (82 empty, 81 input) and key agreement (82 empty, 85 peer point) with
// the key in P2, under its PIN policy.
Response PivApplet::useKey(const Command& command, const std::vector<TlvItem>& items) {
  if (!isKeySlot(command.p2)) {
    return status(kWrongP1P2);
  }
  const auto found = m_state.keys.find(command.p2);
  if (found == m_state.keys.end()) {
    return status(kNotFound);
  }
  const CardKey& key = found->second;
  if (command.p1 != key.algorithm) {
    return status(kWrongP1P2);
  }
  const TlvItem* request = findTlv(items, 0x82);
  const TlvItem* input = findTlv(items, 0x81);
  const TlvItem* peer = findTlv(items, 0x85);
  if (request == nullptr || !request->value.empty() || (input == nullptr) == (peer == nullptr)) {
    return status(kWrongData);
  }
  switch (key.pinPolicy) {
    case PinPolicy::Never:
      break;
    case PinPolicy::Once:
      if (!m_pinVerified) {
        return status(kSecurityStatusNotSatisfied);
      }
      break;
    case PinPolicy::Always:
      if (!m_pinVerified || !m_pinAlwaysGranted) {
        return status(kSecurityStatusNotSatisfied);
      }
      m_pinAlwaysGranted = false;
      break;
  }
  const auto result = input != nullptr ? privateKeyOperation(key.privateKeyDer, input->value)
                                       : keyAgreement(key.privateKeyDer, peer->value);
  if (!result) {
    return status(kWrongData);
  }
  return Response{dynamicAuthenticationTemplate(0x82, *result), kOk};
}

// SP 800-73-4 Part 2 3.3.2: AC {80 algorithm} with YubiKey's AA (PIN policy) and AB (touch
// policy, accepted and ignored); needs the management key. The answer is the public key.
Response PivApplet::generateKeyPair(const Command& command) {
  if (command.p1 != 0x00 || !isKeySlot(command.p2)) {
    return status(kWrongP1P2);
  }
  if (!m_managementAuthenticated) {
    return status(kSecurityStatusNotSatisfied);
  }
  const auto outer = parseTlvs(command.data);
  if (!outer || outer->size() != 1 || (*outer)[0].tag != 0xAC) {
    return status(kWrongData);
  }
  const auto items = parseTlvs((*outer)[0].value);
  const TlvItem* algorithmItem = items ? findTlv(*items, 0x80) : nullptr;
  if (algorithmItem == nullptr || algorithmItem->value.size() != 1 ||
      !isAsymmetricAlgorithm(algorithmItem->value[0])) {
    return status(kWrongData);
  }
  PinPolicy policy = defaultPinPolicy(command.p2);
  if (const TlvItem* policyItem = findTlv(*items, 0xAA); policyItem != nullptr) {
    if (policyItem->value.size() != 1 || policyItem->value[0] > 3) {
      return status(kWrongData);
    }
    if (policyItem->value[0] != 0) {
      policy = static_cast<PinPolicy>(policyItem->value[0]);
    }
  }
  const std::uint8_t id = algorithmItem->value[0];
  auto privateKey = generatePrivateKey(id);
  if (!privateKey) {
    return status(kWrongData);
  }
  Bytes publicKey = publicKeyTemplate(*privateKey);
  m_state.keys[command.p2] = CardKey{id, policy, std::move(*privateKey)};
  m_persist();
  return Response{std::move(publicKey), kOk};
}

// YubiKey's SET MANAGEMENT KEY (INS FF, P1 FF, P2 FF or FE for touch): algorithm, 9B, length,
// key; needs the current management key.
Response PivApplet::setManagementKey(const Command& command) {
  if (command.p1 != 0xFF || (command.p2 != 0xFF && command.p2 != 0xFE)) {
    return status(kWrongP1P2);
  }
  if (!m_managementAuthenticated) {
    return status(kSecurityStatusNotSatisfied);
  }
  if (command.data.size() < 3 || command.data[1] != kManagementKeyReference) {
    return status(kWrongData);
  }
  const std::uint8_t id = command.data[0];
  const std::size_t length = managementKeyLength(id);
  if (length == 0 || command.data[2] != length || command.data.size() != 3 + length) {
    return status(kWrongData);
  }
  m_state.managementAlgorithm = id;
  m_state.managementKey.assign(command.data.begin() + 3, command.data.end());
  m_persist();
  return status(kOk);
}

}  // namespace dojang::virtual_piv
