#include "drivers/piv/slot_overlay.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdlib>

#include "src/common/errors/error.h"

namespace dojang::piv {

namespace {

constexpr std::int64_t kSchemaVersion = 1;

// The overlay says what keys sit where on the user's cards: only its owner may read it.
void createPrivateParents(const std::filesystem::path& file) {
  const auto directory = file.parent_path();
  if (directory.empty() || std::filesystem::exists(directory)) {
    return;
  }
  createPrivateParents(directory);
  if (::mkdir(directory.c_str(), 0700) != 0 && errno != EEXIST) {
    fail(CKR_FUNCTION_FAILED, "cannot create " + directory.string() + " for the PIV slot overlay");
  }
}

sqlite::Database openDatabase(const std::string& path) {
  if (path != ":memory:") {
    createPrivateParents(path);
  }
  sqlite::Database database(path);
  database.execute(
      "CREATE TABLE IF NOT EXISTS piv_slot ("
      " card TEXT NOT NULL,"
      " key_reference INTEGER NOT NULL,"
      " public_key_info BLOB NOT NULL,"
      " object_id BLOB,"
      " private_key_label TEXT,"
      " public_key_label TEXT,"
      " certificate_label TEXT,"
      " generated_on_card INTEGER NOT NULL,"
      " private_key_destroyed INTEGER NOT NULL,"
      " public_key_destroyed INTEGER NOT NULL,"
      " PRIMARY KEY (card, key_reference))");
  sqlite::Statement version(database, "PRAGMA user_version");
  const std::int64_t found = version.step() ? version.integer(0) : 0;
  if (found > kSchemaVersion) {
    fail(CKR_FUNCTION_FAILED, "the PIV slot overlay " + path + " has schema version " + std::to_string(found) +
                                  ", newer than this dojangd's; run a dojangd at least as new as the one that wrote it");
  }
  if (found < kSchemaVersion) {
    database.execute("PRAGMA user_version = " + std::to_string(kSchemaVersion));
  }
  return database;
}

}  // namespace

SlotOverlay::SlotOverlay(const std::string& path) : m_database(openDatabase(path)) {}

std::optional<std::filesystem::path> SlotOverlay::defaultPath() {
  // The XDG base directory spec says relative values are to be ignored.
  if (const char* state = std::getenv("XDG_STATE_HOME"); state != nullptr && state[0] == '/') {
    return std::filesystem::path(state) / "dojang" / "piv-overlay.db";
  }
  if (const char* home = std::getenv("HOME"); home != nullptr && home[0] != '\0') {
    return std::filesystem::path(home) / ".local" / "state" / "dojang" / "piv-overlay.db";
  }
  return std::nullopt;
}

std::vector<StoredSlot> SlotOverlay::slotsOf(const std::string& card) {
  const std::lock_guard lock(m_mutex);
  sqlite::Statement query(m_database,
                          "SELECT key_reference, public_key_info, object_id, private_key_label, public_key_label,"
                          " certificate_label, generated_on_card, private_key_destroyed, public_key_destroyed"
                          " FROM piv_slot WHERE card = ?1 ORDER BY key_reference");
  query.bind(1, card);
  std::vector<StoredSlot> slots;
  while (query.step()) {
    StoredSlot slot;
    slot.keyReference = static_cast<std::uint8_t>(query.integer(0));
    slot.publicKeyInfo = query.blob(1);
    if (!query.isNull(2)) {
      slot.notes.objectId = query.blob(2);
    }
    slot.notes.privateKeyLabel = query.optionalText(3);
    slot.notes.publicKeyLabel = query.optionalText(4);
    slot.notes.certificateLabel = query.optionalText(5);
    slot.notes.generatedOnCard = query.integer(6) != 0;
    slot.notes.privateKeyDestroyed = query.integer(7) != 0;
    slot.notes.publicKeyDestroyed = query.integer(8) != 0;
    slots.push_back(std::move(slot));
  }
  return slots;
}

void SlotOverlay::save(const std::string& card, const StoredSlot& slot) {
  const std::lock_guard lock(m_mutex);
  sqlite::Statement upsert(m_database,
                           "INSERT OR REPLACE INTO piv_slot (card, key_reference, public_key_info, object_id,"
                           " private_key_label, public_key_label, certificate_label, generated_on_card,"
                           " private_key_destroyed, public_key_destroyed)"
                           " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)");
  upsert.bind(1, card).bind(2, std::int64_t{slot.keyReference}).bindBlob(3, slot.publicKeyInfo);
  if (slot.notes.objectId) {
    upsert.bindBlob(4, *slot.notes.objectId);
  } else {
    upsert.bindNull(4);
  }
  upsert.bind(5, slot.notes.privateKeyLabel)
      .bind(6, slot.notes.publicKeyLabel)
      .bind(7, slot.notes.certificateLabel)
      .bind(8, std::int64_t{slot.notes.generatedOnCard})
      .bind(9, std::int64_t{slot.notes.privateKeyDestroyed})
      .bind(10, std::int64_t{slot.notes.publicKeyDestroyed});
  upsert.run();
}

void SlotOverlay::forget(const std::string& card, std::uint8_t keyReference) {
  const std::lock_guard lock(m_mutex);
  sqlite::Statement remove(m_database, "DELETE FROM piv_slot WHERE card = ?1 AND key_reference = ?2");
  remove.bind(1, card).bind(2, std::int64_t{keyReference});
  remove.run();
}

bool reconcile(SlotContent& content, const StoredSlot& stored) {
  if (content.certificate) {
    // The certificate's key is the slot's key (as far as anyone can tell without the private key).
    if (!content.publicKey || content.publicKey->subjectPublicKeyInfo != stored.publicKeyInfo) {
      return false;
    }
    content.notes = stored.notes;
    return true;
  }
  // No certificate: only a key dojang generated there is known to be in the slot.
  if (!stored.notes.generatedOnCard) {
    return false;
  }
  try {
    content.publicKey = publicKeyFromSpki(stored.publicKeyInfo);
  } catch (const Error&) {
    return false;
  }
  content.notes = stored.notes;
  content.notes.certificateLabel.reset();
  return true;
}

bool worthKeeping(const SlotContent& content) {
  return content.publicKey.has_value() && content.notes != SlotNotes{};
}

}  // namespace dojang::piv
