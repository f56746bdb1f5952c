// One PIV card in one reader, for as long as it stays in: its connection, what was read from it
// at insertion (certificates, public keys, serial, version), its PIN state and its login. The
// Token and its sessions share it (sessions may outlive the Token by a little).
//
// Every operation runs through withCard(): one card transaction, serialised per card by
// m_cardMutex, as drivers/token/token.h asks. A card found gone marks the card removed; a card
// reset by another program loses its login (ErrorKind::LoginLost).
#pragma once

#include <array>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "drivers/pcsc/card.h"
#include "drivers/piv/management_key.h"
#include "drivers/piv/piv_applet.h"
#include "drivers/piv/piv_objects.h"
#include "drivers/piv/piv_settings.h"
#include "drivers/piv/slot_overlay.h"
#include "drivers/token/token.h"
#include "src/common/errors/error.h"

namespace dojang::piv {

// CK_TOKEN_INFO.model of a card that still has the factory management key; `dojang tokens`
// recognises it (src/common/cryptoki/token_model.h) and warns.
inline constexpr const char* kModel = "PIV";

class PivCard final {
 public:
  // Connects and reads everything the object model needs, in one transaction. Throws
  // Error(CKR_TOKEN_NOT_RECOGNIZED) for a card without the PIV application.
  // `warn` takes what the daemon's log should say (a card with the default management key).
  // `overlay` (may be null) keeps what PIV cannot store (slot_overlay.h).
  using Warn = std::function<void(const std::string&)>;
  PivCard(std::shared_ptr<const pcsc::Context> context, const std::string& reader,
          const PivSettings& settings, const Warn& warn, std::shared_ptr<SlotOverlay> overlay = nullptr);

  [[nodiscard]] const token::TokenDescription& description() const noexcept { return m_description; }
  [[nodiscard]] bool usesDefaultManagementKey() const noexcept { return m_defaultManagementKey; }
  [[nodiscard]] bool removed() const;

  // Runs `work(applet)` in one card transaction, with the card to itself.
  template <class Work>
  decltype(auto) withCard(Work&& work) {
    const std::lock_guard lock(m_cardMutex);
    try {
      pcsc::CardTransaction transaction = beginLocked();
      PivApplet applet(transaction, m_pivAnsweredBefore);
      if (transaction.wasReset()) {
        afterResetLocked(applet);
      }
      return work(applet);
    } catch (const Error& error) {
      noteFailure(error);
      throw;
    }
  }

  // --- cached state (no APDUs) ---
  [[nodiscard]] std::array<SlotContent, kKeySlotCount> contents() const;
  // Replaces what the driver knows of a slot, and keeps its notes in the overlay.
  void updateSlot(std::size_t slotIndex, SlotContent content);
  // The overlay's key for this card ("yubikey:SERIAL", "chuid:GUID"); empty: the card has none,
  // and its notes last while it stays in.
  [[nodiscard]] const std::string& identity() const noexcept { return m_identity; }
  [[nodiscard]] token::PinStates pinStates() const;
  [[nodiscard]] std::optional<CK_USER_TYPE> login() const;

  // --- operations (each one transaction) ---
  void loginUser(CK_USER_TYPE user, const SecureBytes& pin);
  void logout();
  // Authenticates with the management key (the configured one, else `given`, else the default)
  // inside `applet`'s transaction.
  void authenticateAdministrator(PivApplet& applet, const SecureBytes* given);
  // A management key typed at a prompt: checked now, then used like a configured one until the
  // card is pulled. Throws ErrorKind::PinIncorrect for a wrong key or text that is not one.
  void authorizeAdministrator(const SecureBytes& hexKey);
  // PUT DATA of the slot's certificate (empty: deleted), and of the Key History object when the
  // count of retired slots with certificates changes with it (key_history.h). Inside `applet`'s
  // transaction, after authenticateAdministrator.
  void writeCertificate(PivApplet& applet, std::size_t slotIndex, std::span<const std::uint8_t> der);
  // Verifies the PIN right before a CKA_ALWAYS_AUTHENTICATE key's operation.
  void verifyForOperation(PivApplet& applet, const SecureBytes& pin);
  // C_InitPIN after SO (PUK) login; C_SetPIN for the logged-in user (PIN) or SO (PUK).
  void initPin(const SecureBytes& newPin);
  void setPin(const SecureBytes& oldPin, const SecureBytes& newPin);

 private:
  pcsc::CardTransaction beginLocked();
  void afterResetLocked(PivApplet& applet);
  void noteFailure(const Error& error);
  void readEverything(PivApplet& applet);
  // After a PIN check: the tries left from the card's answer or a fresh VERIFY without data.
  void recordPinResult(PivApplet& applet, bool verified);
  // A PIN (or, with `puk`, PUK) check the card refused: the tries left it said are what
  // pinStates() tells from now on.
  void recordRefusedCheck(const Error& error, bool puk);
  [[nodiscard]] std::optional<ManagementKey> configuredKey(const PivSettings& settings) const;
  // The overlay's notes applied to what the card showed; stale ones forgotten.
  void applyOverlay();
  void persist(std::size_t slotIndex, const SlotContent& content);

  std::shared_ptr<const pcsc::Context> m_context;  // the card handle belongs to it
  std::mutex m_cardMutex;                          // one operation on the card at a time
  bool m_pivAnsweredBefore = false;                // the first transaction (at insertion) selected PIV
  pcsc::CardConnection m_connection;
  Warn m_warn;

  mutable std::mutex m_stateMutex;  // guards the cached state below; never held across APDUs
  std::array<SlotContent, kKeySlotCount> m_contents;
  token::PinState m_pin;
  token::PinState m_puk;
  unsigned m_maxPinTries = 0;
  std::optional<CK_USER_TYPE> m_login;
  std::optional<SecureBytes> m_soPuk;  // the SO's credential while the SO is logged in
  bool m_removed = false;

  token::TokenDescription m_description;
  std::optional<ManagementKey> m_managementKey;  // from the config or a prompt; m_cardMutex
  bool m_defaultManagementKey = false;
  std::string m_serial;
  std::string m_identity;
  std::shared_ptr<SlotOverlay> m_overlay;
  std::mutex m_overlayMutex;          // a slot's change and its row are written in the same order
  std::optional<Bytes> m_keyHistory;  // the card's Key History object; guarded by m_cardMutex
};

}  // namespace dojang::piv
