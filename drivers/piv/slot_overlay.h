// The slot overlay: what a PKCS#11 application may set on a PIV card that PIV has no room for,
// kept by dojangd in SQLite ($XDG_STATE_HOME/dojang/piv-overlay.db, or [piv] overlay_file), per
// card and key slot, so that it survives pulling the card and restarting dojangd:
// - the application's CKA_ID for the slot's key pair (key generation with a CKA_ID that names no
//   slot); it replaces the slot's own CKA_ID (01, 02, ...) for all three objects of the slot,
//   which are then found by it alone;
// - CKA_LABEL per object (from the templates of C_GenerateKeyPair and C_CreateObject, and from
//   C_SetAttributeValue, the one attribute write a PIV object takes);
// - CKA_LOCAL: the key was generated on this card by dojang (PIV cannot tell);
// - the objects an application destroyed (PIV cannot delete a key; see SlotNotes).
// A card is known by its YubiKey serial or, on other cards, its CHUID's GUID (or FASC-N); a card
// with neither keeps its notes only while it stays in. Each entry holds the public key it
// describes: at insertion an entry whose key is no longer the slot's (another program generated
// or imported a key there, or deleted its certificate) is dropped, and a key dojang generated
// whose certificate is not written yet (a renewal interrupted before it stored the certificate)
// is shown from it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "drivers/piv/piv_objects.h"
#include "src/common/sqlite/sqlite.h"

namespace dojang::piv {

struct StoredSlot {
  std::uint8_t keyReference = 0;  // 9A, 9C, ..., 82..95
  Bytes publicKeyInfo;            // DER SubjectPublicKeyInfo of the key the notes are about
  SlotNotes notes;
};

class SlotOverlay final {
 public:
  // Opens (creating) the database; ":memory:" keeps it in this process only.
  explicit SlotOverlay(const std::string& path);

  // $XDG_STATE_HOME/dojang/piv-overlay.db, else $HOME/.local/state/dojang/piv-overlay.db; nullopt
  // when neither variable is set.
  [[nodiscard]] static std::optional<std::filesystem::path> defaultPath();

  [[nodiscard]] std::vector<StoredSlot> slotsOf(const std::string& card);
  void save(const std::string& card, const StoredSlot& slot);
  void forget(const std::string& card, std::uint8_t keyReference);

 private:
  std::mutex m_mutex;
  sqlite::Database m_database;
};

// At insertion: applies `stored` to what the card showed in the slot. Returns false when the
// entry no longer describes the slot's key (the caller forgets it).
[[nodiscard]] bool reconcile(SlotContent& content, const StoredSlot& stored);

// Whether the slot's notes are worth a row: anything an application set, or CKA_LOCAL.
[[nodiscard]] bool worthKeeping(const SlotContent& content);

}  // namespace dojang::piv
