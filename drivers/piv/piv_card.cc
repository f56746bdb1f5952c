#include "drivers/piv/piv_card.h"

#include <fnmatch.h>

#include <algorithm>

#include "drivers/piv/key_history.h"
#include "src/common/cryptoki/hex_text.h"
#include "src/common/cryptoki/token_model.h"
#include "src/common/errors/foreign_errors.h"

namespace dojang::piv {

namespace {

// PIV does not say how many tries a PIN has; a count above every one seen so far is the most
// the card has shown, which is the count after a right PIN for a card inserted unblocked.
constexpr unsigned kAssumedPinTries = 3;
constexpr CK_ULONG kMinPinLength = 6;  // SP 800-73-4 Part 2, 2.4.3: 6 to 8 digits
constexpr CK_ULONG kMaxPinLength = 8;

}  // namespace

PivCard::PivCard(std::shared_ptr<const pcsc::Context> context, const std::string& reader,
                 const PivSettings& settings, const Warn& warn, std::shared_ptr<SlotOverlay> overlay)
    : m_context(std::move(context)),
      m_connection(*m_context, reader),
      m_warn(warn),
      m_overlay(std::move(overlay)) {
  std::optional<FirmwareVersion> version;
  std::optional<std::uint32_t> yubikeySerial;
  std::optional<std::string> chuidSerial;
  withCard([&](PivApplet& applet) {
    applet.select();
    version = applet.yubikeyVersion();
    yubikeySerial = version ? applet.yubikeySerial() : std::nullopt;
    if (!yubikeySerial) {
      chuidSerial = applet.chuidSerial();
    }
    readEverything(applet);
  });
  m_pivAnsweredBefore = true;
  m_serial = yubikeySerial ? std::to_string(*yubikeySerial) : chuidSerial.value_or("");
  if (!m_serial.empty()) {
    m_identity = (yubikeySerial ? "yubikey:" : "chuid:") + m_serial;
  }
  try {
    applyOverlay();
  } catch (const Error& error) {
    warn("the PIV slot overlay could not be read for the card in \"" + reader + "\" (" + error.what() +
         "); its labels, application CKA_IDs and CKA_LOCAL are not shown");
    m_overlay.reset();
  }
  m_managementKey = configuredKey(settings);
  if (m_managementKey) {
    m_defaultManagementKey = isDefaultKey(*m_managementKey);
  } else if (version) {
    // A YubiKey's management key has no retry counter, so trying the factory key costs nothing
    // and tells whether the card is still open to anyone who read a tutorial.
    try {
      withCard([&](PivApplet& applet) { authenticateAdministrator(applet, nullptr); });
      m_defaultManagementKey = true;
    } catch (const Error& error) {
      if (error.kind() == ErrorKind::TokenRemoved) {
        throw;
      }
    }
  } else {
    // Other cards may count failed management-key attempts: assume the default, say so, and let
    // the first key generation find out.
    m_defaultManagementKey = true;
  }
  if (m_defaultManagementKey) {
    warn("the card in \"" + reader +
         "\" uses the well-known default management key; anyone can replace its keys and "
         "certificates. Set a new one (yubico-piv-tool -a set-mgm-key) and name it in "
         "[[piv.card]] management_key_file");
  }

  m_description.label = version ? "YubiKey PIV" : "PIV card";
  if (!m_serial.empty() && yubikeySerial) {
    m_description.label += " #" + m_serial;
  }
  m_description.manufacturer = version ? "Yubico" : "PIV";
  m_description.model = m_defaultManagementKey ? kDefaultManagementKeyModel : kModel;
  m_description.serialNumber = m_serial.substr(0, 16);
  m_description.flags = CKF_TOKEN_INITIALIZED | CKF_USER_PIN_INITIALIZED | CKF_LOGIN_REQUIRED;
  m_description.minPinLen = kMinPinLength;
  m_description.maxPinLen = kMaxPinLength;
  if (version) {
    m_description.firmwareVersion = {version->major,
                                     static_cast<CK_BYTE>(version->minor * 10 + version->patch)};
    m_description.hardwareVersion = {version->major, version->minor};
  }
}

std::optional<ManagementKey> PivCard::configuredKey(const PivSettings& settings) const {
  for (const PivCardSettings& card : settings.cards) {
    const bool bySerial = !card.serial.empty() && card.serial == m_serial;
    const bool byReader =
        !card.reader.empty() && fnmatch(card.reader.c_str(), m_connection.reader().c_str(), 0) == 0;
    if ((bySerial || byReader) && !card.managementKeyFile.empty()) {
      std::optional<apdu::Algorithm> algorithm;
      if (!card.managementKeyAlgorithm.empty()) {
        algorithm = parseManagementAlgorithm(card.managementKeyAlgorithm);
      }
      return readManagementKeyFile(card.managementKeyFile, algorithm);
    }
  }
  return std::nullopt;
}

void PivCard::readEverything(PivApplet& applet) {
  std::array<SlotContent, kKeySlotCount> contents;
  for (std::size_t i = 0; i < kKeySlotCount; ++i) {
    contents[i].certificate = applet.readCertificate(keySlots()[i]);
    if (contents[i].certificate) {
      try {
        contents[i].publicKey = publicKeyFromCertificate(*contents[i].certificate);
      } catch (const Error&) {
        contents[i].certificate.reset();  // not a certificate of a key this card can hold
      }
    }
  }
  m_keyHistory = applet.readObject(kKeyHistoryTag);
  const PinStatus pin = applet.pinStatus();
  const std::lock_guard lock(m_stateMutex);
  m_contents = std::move(contents);
  m_maxPinTries = std::max(pin.retriesLeft.value_or(kAssumedPinTries), kAssumedPinTries);
  const unsigned left = pin.verified ? m_maxPinTries : pin.retriesLeft.value_or(m_maxPinTries);
  m_pin = token::PinState::fromCounts(left, m_maxPinTries);
}

pcsc::CardTransaction PivCard::beginLocked() {
  {
    const std::lock_guard lock(m_stateMutex);
    if (m_removed) {
      fail(CKR_DEVICE_REMOVED, "the card was removed from " + m_connection.reader());
    }
  }
  return pcsc::CardTransaction(m_connection);
}

void PivCard::afterResetLocked(PivApplet& applet) {
  applet.select();  // a reset deselects the application
  bool hadLogin = false;
  {
    const std::lock_guard lock(m_stateMutex);
    hadLogin = m_login.has_value();
  }
  if (hadLogin) {
    throw Error(CKR_USER_NOT_LOGGED_IN, ErrorKind::LoginLost,
                "another program reset the card in " + m_connection.reader() + "; its login is gone");
  }
}

void PivCard::noteFailure(const Error& error) {
  const std::lock_guard lock(m_stateMutex);
  if (error.kind() == ErrorKind::TokenRemoved) {
    m_removed = true;
  }
  if (error.kind() == ErrorKind::TokenRemoved || error.kind() == ErrorKind::LoginLost) {
    m_login.reset();
    m_soPuk.reset();
  }
}

bool PivCard::removed() const {
  const std::lock_guard lock(m_stateMutex);
  return m_removed;
}

std::array<SlotContent, kKeySlotCount> PivCard::contents() const {
  const std::lock_guard lock(m_stateMutex);
  return m_contents;
}

void PivCard::updateSlot(std::size_t slotIndex, SlotContent content) {
  const std::lock_guard overlayLock(m_overlayMutex);
  {
    const std::lock_guard lock(m_stateMutex);
    m_contents.at(slotIndex) = content;
  }
  persist(slotIndex, content);
}

void PivCard::persist(std::size_t slotIndex, const SlotContent& content) {
  if (!m_overlay || m_identity.empty()) {
    return;
  }
  const std::uint8_t reference = keySlots().at(slotIndex).keyReference;
  if (worthKeeping(content)) {
    m_overlay->save(m_identity, {reference, content.publicKey->subjectPublicKeyInfo, content.notes});
  } else {
    m_overlay->forget(m_identity, reference);
  }
}

void PivCard::applyOverlay() {
  if (!m_overlay || m_identity.empty()) {
    return;
  }
  const std::lock_guard overlayLock(m_overlayMutex);
  for (const StoredSlot& stored : m_overlay->slotsOf(m_identity)) {
    const KeySlot* slot = slotForObjectId(std::span(&stored.keyReference, 1));
    bool holds = false;
    if (slot != nullptr && slot->keyReference == stored.keyReference) {
      const std::lock_guard lock(m_stateMutex);
      holds = reconcile(m_contents.at(static_cast<std::size_t>(slot - keySlots().data())), stored);
    }
    if (!holds) {
      m_overlay->forget(m_identity, stored.keyReference);
    }
  }
}

void PivCard::writeCertificate(PivApplet& applet, std::size_t slotIndex, std::span<const std::uint8_t> der) {
  const KeySlot& slot = keySlots().at(slotIndex);
  applet.writeCertificate(slot, der);
  if (!retiredNumber(slot)) {
    return;
  }
  // Retired slots 82 .. 82+count-1 are the ones the history object covers.
  unsigned wanted = 0;
  {
    const std::lock_guard lock(m_stateMutex);
    for (std::size_t i = 0; i < kKeySlotCount; ++i) {
      const bool hasCertificate = i == slotIndex ? !der.empty() : m_contents[i].certificate.has_value();
      if (const auto number = retiredNumber(keySlots()[i]); number && hasCertificate) {
        wanted = std::max(wanted, static_cast<unsigned>(*number + 1));
      }
    }
  }
  if (wanted == onCardCertificateCount(m_keyHistory)) {
    return;
  }
  Bytes history = keyHistoryWithOnCardCount(m_keyHistory, static_cast<std::uint8_t>(wanted));
  try {
    applet.writeObject(kKeyHistoryTag, history);
    m_keyHistory = std::move(history);
  } catch (const Error& error) {
    if (error.kind() == ErrorKind::TokenRemoved) {
      throw;
    }
    // The certificate is written and works through dojang; only OpenSC's view lags.
    m_warn("the card in \"" + m_connection.reader() + "\" refused its Key History object (" + error.what() +
           "); OpenSC will not see the certificate in retired slot " +
           hexText(std::span(&slot.keyReference, 1)));
  }
}

token::PinStates PivCard::pinStates() const {
  const std::lock_guard lock(m_stateMutex);
  return {m_pin, m_puk};
}

std::optional<CK_USER_TYPE> PivCard::login() const {
  const std::lock_guard lock(m_stateMutex);
  return m_login;
}

void PivCard::recordPinResult(PivApplet& applet, bool verified) {
  const PinStatus status = verified ? PinStatus{true, std::nullopt} : applet.pinStatus();
  const std::lock_guard lock(m_stateMutex);
  if (status.retriesLeft) {
    m_maxPinTries = std::max(m_maxPinTries, *status.retriesLeft);
  }
  const unsigned left = status.verified ? m_maxPinTries : status.retriesLeft.value_or(m_maxPinTries);
  m_pin = token::PinState::fromCounts(left, m_maxPinTries);
}

void PivCard::loginUser(CK_USER_TYPE user, const SecureBytes& pin) {
  withCard([&](PivApplet& applet) {
    if (user == CKU_SO) {
      // The SO of a PIV card is the PUK's holder: checked without being used up, and kept for
      // C_InitPIN (RESET RETRY COUNTER) while the SO stays logged in.
      try {
        applet.checkPuk(pin);
      } catch (const Error& error) {
        recordRefusedCheck(error, true);
        throw;
      }
      const std::lock_guard lock(m_stateMutex);
      m_puk = token::PinState{};
      m_soPuk.emplace(pin.view());
      m_login = CKU_SO;
      return;
    }
    try {
      applet.verifyPin(pin);
    } catch (const Error& error) {
      recordRefusedCheck(error, false);
      throw;
    }
    recordPinResult(applet, true);
    const std::lock_guard lock(m_stateMutex);
    m_login = CKU_USER;
  });
}

void PivCard::recordRefusedCheck(const Error& error, bool puk) {
  const std::lock_guard lock(m_stateMutex);
  if (puk) {
    if (error.pinRetriesLeft()) {
      const unsigned left = *error.pinRetriesLeft();
      m_puk = token::PinState{left, std::nullopt, left == 0, true, left == 1};
    }
    return;
  }
  if (error.kind() == ErrorKind::PinIncorrect || error.kind() == ErrorKind::PinLocked) {
    const unsigned left = error.pinRetriesLeft().value_or(0);
    m_maxPinTries = std::max(m_maxPinTries, left);
    m_pin = token::PinState::fromCounts(left, m_maxPinTries);
  }
}

void PivCard::logout() {
  withCard([&](PivApplet& applet) {
    applet.resetPinStatus();
    const std::lock_guard lock(m_stateMutex);
    m_login.reset();
    m_soPuk.reset();
  });
}

void PivCard::authenticateAdministrator(PivApplet& applet, const SecureBytes* given) {
  if (m_managementKey) {
    applet.authenticateManagementKey(*m_managementKey);
    return;
  }
  if (given != nullptr) {
    applet.authenticateManagementKey(parseManagementKey(
        std::string_view(reinterpret_cast<const char*>(given->data()), given->size()), std::nullopt));
    return;
  }
  try {
    applet.authenticateManagementKey(defaultManagementKey(apdu::Algorithm::TripleDes));
    return;
  } catch (const Error& error) {
    if (error.rv() != CKR_FUNCTION_REJECTED) {
      throw;
    }
  }
  try {
    // YubiKey 5.7 ships the same default bytes as an AES-192 key.
    applet.authenticateManagementKey(defaultManagementKey(apdu::Algorithm::Aes192));
  } catch (const Error& error) {
    if (error.rv() != CKR_FUNCTION_REJECTED) {
      throw;
    }
    throw Error(CKR_USER_NOT_LOGGED_IN, ErrorKind::CredentialNeeded,
                "the card's management key is not the default one: name it in [[piv.card]] "
                "management_key_file, or type it when dojangd asks");
  }
}

void PivCard::authorizeAdministrator(const SecureBytes& hexKey) {
  const std::string_view text(reinterpret_cast<const char*>(hexKey.data()), hexKey.size());
  std::optional<ManagementKey> parsed;
  try {
    parsed = parseManagementKey(text, std::nullopt);
  } catch (const Error&) {
    throw Error(CKR_PIN_INCORRECT, ErrorKind::PinIncorrect,
                "not a management key: 32, 48 or 64 hex digits are expected");
  }
  withCard([&](PivApplet& applet) {
    try {
      applet.authenticateManagementKey(*parsed);
    } catch (const Error& error) {
      if (error.rv() != CKR_FUNCTION_REJECTED) {
        throw;
      }
      // 24 bytes are 3DES or AES-192: the card's answer decides.
      if (parsed->algorithm != apdu::Algorithm::TripleDes) {
        throw Error(CKR_PIN_INCORRECT, ErrorKind::PinIncorrect, "wrong management key");
      }
      parsed->algorithm = apdu::Algorithm::Aes192;
      try {
        applet.authenticateManagementKey(*parsed);
      } catch (const Error& again) {
        if (again.rv() != CKR_FUNCTION_REJECTED) {
          throw;
        }
        throw Error(CKR_PIN_INCORRECT, ErrorKind::PinIncorrect, "wrong management key");
      }
    }
    m_managementKey = std::move(*parsed);
  });
}

void PivCard::verifyForOperation(PivApplet& applet, const SecureBytes& pin) {
  try {
    applet.verifyPin(pin);
  } catch (const Error& error) {
    if (error.kind() == ErrorKind::PinIncorrect || error.kind() == ErrorKind::PinLocked) {
      const std::lock_guard lock(m_stateMutex);
      m_pin = token::PinState::fromCounts(error.pinRetriesLeft().value_or(0), m_maxPinTries);
    }
    throw;
  }
  recordPinResult(applet, true);
}

void PivCard::initPin(const SecureBytes& newPin) {
  withCard([&](PivApplet& applet) {
    std::optional<SecureBytes> puk;
    {
      const std::lock_guard lock(m_stateMutex);
      if (m_login != CKU_SO || !m_soPuk) {
        fail(CKR_USER_NOT_LOGGED_IN, "C_InitPIN on a PIV card needs the SO (PUK) logged in");
      }
      puk.emplace(m_soPuk->view());
    }
    applet.resetRetryCounter(*puk, newPin);
    recordPinResult(applet, false);
  });
}

void PivCard::setPin(const SecureBytes& oldPin, const SecureBytes& newPin) {
  const bool so = login() == CKU_SO;
  withCard([&](PivApplet& applet) {
    try {
      applet.changeReference(so ? apdu::kPukReference : apdu::kPinReference, oldPin, newPin);
    } catch (const Error& error) {
      recordRefusedCheck(error, so);  // a wrong old PIN used up a try, as a wrong VERIFY does
      throw;
    }
    if (so) {
      const std::lock_guard lock(m_stateMutex);
      m_soPuk.emplace(newPin.view());
    } else {
      recordPinResult(applet, true);
    }
  });
}

}  // namespace dojang::piv
