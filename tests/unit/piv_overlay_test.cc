// The PIV driver's slot overlay (drivers/piv/slot_overlay.h) and the object model on top of it:
// rows kept per card and key slot across reopening, stale rows recognised at insertion, the
// application's CKA_ID and labels replacing the slot's, destroyed objects hidden, the Key History
// object's count, and where key generation looks for a free slot. No card: SQLite files in a
// temporary directory and objects built in memory.
#include <catch2/catch.hpp>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <sys/stat.h>

#include <set>
#include <string>
#include <vector>

#include "drivers/piv/ber_tlv.h"
#include "drivers/piv/key_history.h"
#include "drivers/piv/key_slots.h"
#include "drivers/piv/piv_objects.h"
#include "drivers/piv/slot_overlay.h"
#include "src/common/ossl/owners.h"
#include "tests/support/temp_dir.h"

namespace piv = dojang::piv;
using piv::Bytes;

namespace {

// A fresh P-256 public key, as DER SubjectPublicKeyInfo.
Bytes freshSpki() {
  dojang::PkeyPtr key(EVP_EC_gen("P-256"));
  REQUIRE(key);
  unsigned char* der = nullptr;
  const int length = i2d_PUBKEY(key.get(), &der);
  REQUIRE(length > 0);
  Bytes spki(der, der + length);
  OPENSSL_free(der);
  return spki;
}

const Bytes kApplicationId = {0x90, 0x3e, 0x63, 0xe9, 0x8c, 0xf3, 0x28, 0xd9,
                              0x79, 0x5a, 0x90, 0x7f, 0xbc, 0xce, 0xb8, 0xcf};

piv::StoredSlot storedSlot(std::uint8_t reference, const Bytes& spki) {
  piv::StoredSlot slot;
  slot.keyReference = reference;
  slot.publicKeyInfo = spki;
  slot.notes.objectId = kApplicationId;
  slot.notes.privateKeyLabel = "signkey";
  slot.notes.publicKeyLabel = "signkey";
  slot.notes.certificateLabel = "signkey";
  slot.notes.generatedOnCard = true;
  return slot;
}

Bytes attribute(const dojang::token::AttributeList& attributes, CK_ATTRIBUTE_TYPE type) {
  for (const auto& entry : attributes) {
    if (entry.type == type) {
      return entry.value;
    }
  }
  FAIL("attribute " << type << " missing");
  return {};
}

std::string text(const Bytes& bytes) { return std::string(bytes.begin(), bytes.end()); }
bool flag(const Bytes& bytes) { return bytes.size() == 1 && bytes[0] == CK_TRUE; }

}  // namespace

TEST_CASE("the slot overlay keeps rows per card and key slot across reopening", "[piv][overlay]") {
  const dojang::test::TempDir dir("dojang-overlay-");
  const auto path = dir / "state" / "dojang" / "piv-overlay.db";
  const Bytes first = freshSpki();
  const Bytes second = freshSpki();
  {
    piv::SlotOverlay overlay(path.string());
    overlay.save("yubikey:10000001", storedSlot(0x9A, first));
    auto retired = storedSlot(0x82, second);
    retired.notes.objectId.reset();
    retired.notes.certificateLabel.reset();
    retired.notes.publicKeyDestroyed = true;
    overlay.save("yubikey:10000001", retired);
    overlay.save("chuid:00112233", storedSlot(0x9A, second));
  }
  // The directories it made are its owner's alone.
  struct stat info {};
  REQUIRE(::stat((dir / "state").c_str(), &info) == 0);
  CHECK((info.st_mode & 0777) == 0700);

  piv::SlotOverlay overlay(path.string());
  const auto slots = overlay.slotsOf("yubikey:10000001");
  REQUIRE(slots.size() == 2);
  CHECK(slots[0].keyReference == 0x82);
  CHECK(slots[0].publicKeyInfo == second);
  CHECK_FALSE(slots[0].notes.objectId.has_value());
  CHECK(slots[0].notes.privateKeyLabel == "signkey");
  CHECK_FALSE(slots[0].notes.certificateLabel.has_value());
  CHECK(slots[0].notes.publicKeyDestroyed);
  CHECK_FALSE(slots[0].notes.privateKeyDestroyed);
  CHECK(slots[1].keyReference == 0x9A);
  CHECK(slots[1].publicKeyInfo == first);
  CHECK(slots[1].notes == storedSlot(0x9A, first).notes);

  // A save replaces the slot's row; forget removes it; other cards are untouched.
  auto relabelled = storedSlot(0x9A, first);
  relabelled.notes.certificateLabel = "signkey (retired 2026-12-01)";
  overlay.save("yubikey:10000001", relabelled);
  CHECK(overlay.slotsOf("yubikey:10000001")[1].notes.certificateLabel == "signkey (retired 2026-12-01)");
  overlay.forget("yubikey:10000001", 0x82);
  CHECK(overlay.slotsOf("yubikey:10000001").size() == 1);
  CHECK(overlay.slotsOf("chuid:00112233").size() == 1);
  CHECK(overlay.slotsOf("chuid:ffff").empty());
}

TEST_CASE("at insertion an overlay row applies only to the key it was written for", "[piv][overlay]") {
  const Bytes spki = freshSpki();
  const auto stored = storedSlot(0x9A, spki);

  SECTION("the certificate's key is the row's: its notes apply") {
    piv::SlotContent content;
    content.certificate = Bytes{0x30};
    content.publicKey = piv::publicKeyFromSpki(spki);
    REQUIRE(piv::reconcile(content, stored));
    CHECK(content.notes == stored.notes);
  }
  SECTION("another key is in the slot now: the row is stale") {
    piv::SlotContent content;
    content.certificate = Bytes{0x30};
    content.publicKey = piv::publicKeyFromSpki(freshSpki());
    CHECK_FALSE(piv::reconcile(content, stored));
    CHECK(content.notes == piv::SlotNotes{});
  }
  SECTION("no certificate, a key dojang generated (a renewal's pending key): shown from the row") {
    piv::SlotContent content;
    REQUIRE(piv::reconcile(content, stored));
    REQUIRE(content.publicKey.has_value());
    CHECK(content.publicKey->subjectPublicKeyInfo == spki);
    CHECK(content.publicKey->keyType == CKK_EC);
    CHECK(content.notes.objectId == kApplicationId);
    CHECK_FALSE(content.notes.certificateLabel.has_value());
    CHECK(content.hasKey());
  }
  SECTION("no certificate and a key dojang did not generate: nothing is known to be there") {
    auto imported = stored;
    imported.notes.generatedOnCard = false;
    piv::SlotContent content;
    CHECK_FALSE(piv::reconcile(content, imported));
    CHECK_FALSE(content.publicKey.has_value());
  }
}

TEST_CASE("PIV objects show the overlay's CKA_ID and labels, and CKA_LOCAL", "[piv][overlay]") {
  const auto& slot = piv::keySlots()[4];  // 82
  piv::SlotContent content;
  content.certificate = Bytes{0x30};
  content.publicKey = piv::publicKeyFromSpki(freshSpki());

  SECTION("without notes: the slot's own CKA_ID and fixed labels, nothing known to be local") {
    const auto key = piv::objectAttributes(slot, content, piv::ObjectKind::PrivateKey);
    CHECK(attribute(key, CKA_ID) == Bytes{0x05});
    CHECK(text(attribute(key, CKA_LABEL)) == "RETIRED1 key");
    CHECK_FALSE(flag(attribute(key, CKA_LOCAL)));
    CHECK_FALSE(flag(attribute(key, CKA_NEVER_EXTRACTABLE)));
    CHECK(text(attribute(piv::objectAttributes(slot, content, piv::ObjectKind::Certificate), CKA_LABEL)) ==
          "Certificate for Retired Key 1");
  }
  SECTION("with notes: the application's CKA_ID for all three objects, a label each") {
    content.notes.objectId = kApplicationId;
    content.notes.privateKeyLabel = "signkey";
    content.notes.publicKeyLabel = "signkey pub";
    content.notes.certificateLabel = "signkey cert";
    content.notes.generatedOnCard = true;
    for (const auto kind : {piv::ObjectKind::PrivateKey, piv::ObjectKind::PublicKey, piv::ObjectKind::Certificate}) {
      const auto attributes = piv::objectAttributes(slot, content, kind);
      CHECK(attribute(attributes, CKA_ID) == kApplicationId);
      CHECK(flag(attribute(attributes, CKA_MODIFIABLE)));
      CHECK(flag(attribute(attributes, CKA_DESTROYABLE)));
    }
    const auto key = piv::objectAttributes(slot, content, piv::ObjectKind::PrivateKey);
    CHECK(text(attribute(key, CKA_LABEL)) == "signkey");
    CHECK(flag(attribute(key, CKA_LOCAL)));
    CHECK(flag(attribute(key, CKA_ALWAYS_SENSITIVE)));
    CHECK(flag(attribute(key, CKA_NEVER_EXTRACTABLE)));
    CHECK(text(attribute(piv::objectAttributes(slot, content, piv::ObjectKind::PublicKey), CKA_LABEL)) ==
          "signkey pub");
    CHECK(text(attribute(piv::objectAttributes(slot, content, piv::ObjectKind::Certificate), CKA_LABEL)) ==
          "signkey cert");
    // Found by the application's CKA_ID, not by the slot's.
    CHECK(piv::matchesTemplate(key, {{CKA_ID, kApplicationId}}));
    CHECK_FALSE(piv::matchesTemplate(key, {{CKA_ID, Bytes{0x05}}}));
  }
}

TEST_CASE("destroyed PIV keys are hidden and free their slot", "[piv][overlay]") {
  piv::SlotContent content;
  content.publicKey = piv::publicKeyFromSpki(freshSpki());
  content.notes.generatedOnCard = true;
  CHECK(piv::objectExists(content, piv::ObjectKind::PrivateKey));
  CHECK(piv::objectExists(content, piv::ObjectKind::PublicKey));
  CHECK_FALSE(piv::objectExists(content, piv::ObjectKind::Certificate));
  CHECK_FALSE(content.isFree());
  CHECK(piv::worthKeeping(content));

  content.notes.publicKeyDestroyed = true;
  CHECK_FALSE(piv::objectExists(content, piv::ObjectKind::PublicKey));
  CHECK(piv::objectExists(content, piv::ObjectKind::PrivateKey));
  CHECK_FALSE(content.isFree());

  content.notes.privateKeyDestroyed = true;
  CHECK_FALSE(piv::objectExists(content, piv::ObjectKind::PrivateKey));
  CHECK(content.isFree());

  // A slot with a certificate is not free, whatever its key.
  content.certificate = Bytes{0x30};
  CHECK_FALSE(content.isFree());

  // Nothing an application set and no key generated: no row.
  piv::SlotContent plain;
  plain.publicKey = piv::publicKeyFromSpki(freshSpki());
  CHECK_FALSE(piv::worthKeeping(plain));
  CHECK_FALSE(piv::worthKeeping(piv::SlotContent{}));
}

TEST_CASE("the Key History object counts the retired slots with certificates", "[piv][overlay]") {
  CHECK(piv::onCardCertificateCount(std::nullopt) == 0);
  const Bytes made = piv::keyHistoryWithOnCardCount(std::nullopt, 2);
  CHECK(made == Bytes{0xC1, 0x01, 0x02, 0xC2, 0x01, 0x00, 0xFE, 0x00});
  CHECK(piv::onCardCertificateCount(made) == 2);

  // keysWithOffCardCerts and the URL of an existing object are kept.
  Bytes existing;
  const std::uint8_t one[] = {1};
  const std::uint8_t three[] = {3};
  const std::string url = "http://example.invalid/certs";
  piv::appendTlv(existing, 0xC1, one);
  piv::appendTlv(existing, 0xC2, three);
  piv::appendTlv(existing, 0xF3, Bytes(url.begin(), url.end()));
  piv::appendTlv(existing, 0xFE, {});
  const Bytes updated = piv::keyHistoryWithOnCardCount(existing, 4);
  CHECK(piv::onCardCertificateCount(updated) == 4);
  const auto offCard = piv::findTlv(updated, 0xC2);
  REQUIRE(offCard);
  CHECK(Bytes(offCard->begin(), offCard->end()) == Bytes{3});
  const auto kept = piv::findTlv(updated, 0xF3);
  REQUIRE(kept);
  CHECK(std::string(kept->begin(), kept->end()) == url);
}

TEST_CASE("key generation looks for a free slot in 9A, 82..95, 9D, 9C, 9E", "[piv][overlay]") {
  const auto& order = piv::generationOrder();
  std::vector<std::uint8_t> references;
  for (const std::size_t index : order) {
    references.push_back(piv::keySlots()[index].keyReference);
  }
  CHECK(references.front() == 0x9A);
  CHECK(references[1] == 0x82);
  CHECK(references[20] == 0x95);
  CHECK(std::vector<std::uint8_t>(references.end() - 3, references.end()) == std::vector<std::uint8_t>{0x9D, 0x9C, 0x9E});
  CHECK(std::set<std::size_t>(order.begin(), order.end()).size() == piv::kKeySlotCount);
  CHECK(piv::retiredNumber(piv::keySlots()[4]) == 0u);
  CHECK_FALSE(piv::retiredNumber(piv::keySlots()[0]).has_value());
}
