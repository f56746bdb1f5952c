// Cards coming and going under a running dojangd with the native PIV driver, over the real pcscd
// and vpcd with the virtual PIV card: C_WaitForSlotEvent (blocking and CKF_DONT_BLOCK) and
// NSS-style slot polling through dojang-pkcs11.so loaded in this process, stable slot IDs, a
// card swapped for another, pcscd restarted under dojangd or started after it, a card pulled in
// the middle of a signature with two clients on it, the card read back by OpenSC and ykcs11
// without dojang, and one slot per card when the OpenSC backend sees it too.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "src/common/errors/error.h"
#include "tests/integration/hotplug_bench.h"
#include "tests/support/raw_wire.h"

namespace {

using dojang::ckRvName;
using dojang::test::DojangModule;
using dojang::test::eventually;
using namespace dojang::test::hotplug;

constexpr const char* kOpenscModule = "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so";
constexpr const char* kYkcs11Module = "/usr/lib/x86_64-linux-gnu/libykcs11.so.2";

}  // namespace

TEST_CASE("hotplug: C_WaitForSlotEvent and NSS-style polling follow the card; the slot and its token stay the same",
          "[piv][integration][hotplug]") {
  HotplugBench bench;
  bench.startDaemon();
  DojangModule module;
  auto& p11 = module.functions();
  REQUIRE(module.initialize() == CKR_OK);

  // An empty reader is a slot already: removable, no token, and nothing happened yet.
  const auto found = readerSlot(p11, bench.reader());
  REQUIRE(found);
  const CK_SLOT_ID slot = *found;
  const std::size_t slotCount = slotList(p11, false).size();
  CHECK((slotInfo(p11, slot).flags & CKF_REMOVABLE_DEVICE) != 0);
  CHECK_FALSE(tokenPresent(p11, slot));
  CK_SLOT_ID none = 0;
  CHECK(ckRvName(p11.C_WaitForSlotEvent(CKF_DONT_BLOCK, &none, nullptr)) == ckRvName(CKR_NO_EVENT));

  // Insertion wakes a blocked waiter with the slot.
  std::string serial;
  {
    SlotEventWaiter waiter(module);
    CHECK(waiter.blocked(std::chrono::milliseconds(300)));
    bench.insert();
    const auto event = waiter.result();
    REQUIRE(event);
    CHECK(ckRvName(event->first) == ckRvName(CKR_OK));
    CHECK(event->second == slot);
  }
  CHECK(tokenPresent(p11, slot));
  serial = tokenSerial(p11, slot);
  CHECK_FALSE(serial.empty());
  const auto present = slotList(p11, true);
  CHECK(std::find(present.begin(), present.end(), slot) != present.end());
  CHECK(ckRvName(p11.C_WaitForSlotEvent(CKF_DONT_BLOCK, &none, nullptr)) == ckRvName(CKR_NO_EVENT));

  // Removal wakes it too; the slot stays in the list, without its token.
  {
    SlotEventWaiter waiter(module);
    CHECK(waiter.blocked(std::chrono::milliseconds(300)));
    bench.card.stop();
    const auto event = waiter.result();
    REQUIRE(event);
    CHECK(ckRvName(event->first) == ckRvName(CKR_OK));
    CHECK(event->second == slot);
  }
  CHECK_FALSE(tokenPresent(p11, slot));
  CHECK((slotInfo(p11, slot).flags & CKF_REMOVABLE_DEVICE) != 0);
  CHECK(slotList(p11, false).size() == slotCount);
  const auto afterRemoval = slotList(p11, true);
  CHECK(std::find(afterRemoval.begin(), afterRemoval.end(), slot) == afterRemoval.end());
  CK_TOKEN_INFO gone{};
  CHECK(ckRvName(p11.C_GetTokenInfo(slot, &gone)) == ckRvName(CKR_TOKEN_NOT_PRESENT));
  CHECK(ckRvName(p11.C_WaitForSlotEvent(CKF_DONT_BLOCK, &none, nullptr)) == ckRvName(CKR_NO_EVENT));

  // Re-insertion seen by CKF_DONT_BLOCK polling: the same slot ID, the same token.
  bench.insert();
  const auto [rv, inserted] = pollSlotEvent(p11);
  CHECK(ckRvName(rv) == ckRvName(CKR_OK));
  CHECK(inserted == slot);
  CHECK(tokenPresent(p11, slot));
  CHECK(tokenSerial(p11, slot) == serial);
  CHECK(readerSlot(p11, bench.reader()) == slot);

  // NSS polls C_GetSlotInfo about once a second: CKF_TOKEN_PRESENT goes as the card goes, and
  // the event is still there for a later C_WaitForSlotEvent.
  bench.card.stop();
  CHECK(eventually([&] { return !tokenPresent(p11, slot); }));
  CHECK(slotList(p11, false).size() == slotCount);
  CK_SLOT_ID removed = 0;
  CHECK(ckRvName(p11.C_WaitForSlotEvent(CKF_DONT_BLOCK, &removed, nullptr)) == ckRvName(CKR_OK));
  CHECK(removed == slot);
  bench.insert();
  CHECK(eventually([&] { return tokenPresent(p11, slot); }));
  CHECK(tokenSerial(p11, slot) == serial);
  CHECK(slotList(p11, false).size() == slotCount);
  REQUIRE(module.finalize() == CKR_OK);
  CHECK(bench.daemon->stop() == 0);
  // CKR_NO_EVENT is an everyday answer: a client polling once a second must not fill the log.
  CHECK_FALSE(contains(bench.daemon->log(), "warning: WaitForSlotEvent"));
}

namespace {

// ECDSA over kSignedData with card key `id` through dojang, checked by openssl.
bool ecSignatureVerifies(HotplugBench& bench, const std::string& id, const std::string& publicKey) {
  dojang::test::writeFile(bench.path("data"), kSignedData);
  const auto signed_ = bench.userTool({"--sign", "--mechanism", "ECDSA-SHA256", "--id", id, "-i", bench.path("data"),
                                      "-o", bench.path("sig-ec"), "--signature-format", "openssl"});
  return signed_.exitCode == 0 &&
         bench.run({"openssl", "dgst", "-sha256", "-verify", publicKey, "-signature", bench.path("sig-ec"),
                    bench.path("data")}).exitCode == 0;
}

}  // namespace

TEST_CASE("pcscd restarted under a running dojangd: the card comes back, with no dojangd restart",
          "[piv][integration][hotplug][pcscd]") {
  HotplugBench bench;
  bench.startDaemon();
  const pid_t daemonPid = bench.daemon->pid();
  DojangModule module;
  auto& p11 = module.functions();
  REQUIRE(module.initialize() == CKR_OK);
  const auto slot = readerSlot(p11, bench.reader());
  REQUIRE(slot);
  bench.insert();
  REQUIRE(eventually([&] { return tokenPresent(p11, *slot); }));
  const std::string publicKey = bench.generate("01", "EC:prime256v1");
  const std::size_t slotCount = slotList(p11, false).size();
  // A session logged in and in the middle of a signature when pcscd goes.
  CK_SESSION_HANDLE before = CK_INVALID_HANDLE;
  REQUIRE(ckRvName(prepareSignature(p11, *slot, 0x01, true, before, CKM_ECDSA_SHA256)) == ckRvName(CKR_OK));

  SECTION("the card left in its reader: it reconnects to the new vpcd by itself") {
    {
      SlotEventWaiter waiter(module);
      bench.pcscd.restart();
      const auto event = waiter.result();  // the card went with the old pcscd
      REQUIRE(event);
      CHECK(event->second == *slot);
    }
    REQUIRE(bench.card.waitUntilPresent(bench.reader()));
  }
  SECTION("the card pulled, pcscd restarted, the card inserted again") {
    bench.card.stop();
    REQUIRE(eventually([&] { return !tokenPresent(p11, *slot); }));
    bench.pcscd.restart();
    bench.insert();
  }
  CHECK(eventually([&] { return tokenPresent(p11, *slot); }));
  CHECK(readerSlot(p11, bench.reader()) == slot);
  CHECK(slotList(p11, false).size() == slotCount);
  CHECK(ecSignatureVerifies(bench, "01", publicKey));
  // That session ended with the card it was on; the same client signs in a new one.
  const CK_RV stale = signData(p11, before);
  INFO("C_Sign on the session from before the restart: " << ckRvName(stale));
  CHECK(removedRv(stale));
  CK_SESSION_HANDLE after = CK_INVALID_HANDLE;
  REQUIRE(ckRvName(prepareSignature(p11, *slot, 0x01, true, after, CKM_ECDSA_SHA256)) == ckRvName(CKR_OK));
  CHECK(ckRvName(signData(p11, after)) == ckRvName(CKR_OK));
  CHECK(bench.daemon->pid() == daemonPid);
  CHECK(dojang::test::processAlive(daemonPid));
  REQUIRE(module.finalize() == CKR_OK);
  CHECK(bench.daemon->stop() == 0);
}

TEST_CASE("pcscd started after dojangd: its reader and the next insertion are seen, the card signs",
          "[piv][integration][hotplug][pcscd]") {
  HotplugBench bench;
  bench.pcscd.stop();
  bench.startDaemon();
  DojangModule module;
  auto& p11 = module.functions();
  REQUIRE(module.initialize() == CKR_OK);
  CHECK_FALSE(readerSlot(p11, bench.reader()));
  const std::size_t slotsWithoutPcscd = slotList(p11, false).size();

  bench.pcscd.start();
  {
    SlotEventWaiter waiter(module);
    bench.insert();
    const auto event = waiter.result();
    REQUIRE(event);
    CHECK(ckRvName(event->first) == ckRvName(CKR_OK));
    CHECK(readerSlot(p11, bench.reader()) == event->second);
  }
  const auto slot = readerSlot(p11, bench.reader());
  REQUIRE(slot);
  CHECK(tokenPresent(p11, *slot));
  CHECK(slotList(p11, false).size() > slotsWithoutPcscd);
  const std::string publicKey = bench.generate("01", "EC:prime256v1");
  CHECK(ecSignatureVerifies(bench, "01", publicKey));
  REQUIRE(module.finalize() == CKR_OK);
  CHECK(bench.daemon->stop() == 0);
}

TEST_CASE("a card pulled mid-signature ends every session on it, dojangd stays, the same client signs after re-insertion",
          "[piv][integration][hotplug][pulled]") {
  HotplugBench bench;
  bench.startDaemon();
  // The card leaves at the first APDU of a signature with 9D (GENERAL AUTHENTICATE, INS 87),
  // without answering it: pulled in the middle of the exchange.
  bench.insert({"--exit-on-ins", "87:9d"});
  bench.waitForToken();
  const std::string publicKey = bench.generate("03", "rsa:2048");
  constexpr CK_BYTE kKeyId = 0x03;

  std::optional<CK_SLOT_ID> slot;
  {
    DojangModule probe;  // the slot ID for the second client, which must fork before this process loads the module
    REQUIRE(probe.initialize() == CKR_OK);
    slot = readerSlot(probe.functions(), bench.reader());
    REQUIRE(probe.finalize() == CKR_OK);
  }
  REQUIRE(slot);
  SecondClient other(*slot, kKeyId);
  const auto otherPrepared = other.prepared();
  REQUIRE(otherPrepared);
  REQUIRE(ckRvName(*otherPrepared) == ckRvName(CKR_OK));

  DojangModule module;
  auto& p11 = module.functions();
  REQUIRE(module.initialize() == CKR_OK);
  CK_SESSION_HANDLE first = CK_INVALID_HANDLE;
  CK_SESSION_HANDLE second = CK_INVALID_HANDLE;
  REQUIRE(ckRvName(prepareSignature(p11, *slot, kKeyId, true, first)) == ckRvName(CKR_OK));
  REQUIRE(ckRvName(prepareSignature(p11, *slot, kKeyId, false, second)) == ckRvName(CKR_OK));

  const CK_RV pulled = signData(p11, first);
  INFO("C_Sign as the card left: " << ckRvName(pulled));
  CHECK(removedRv(pulled));
  CHECK(eventually([&] { return !bench.card.running(); }));  // it left at that APDU
  const CK_RV secondRv = signData(p11, second);
  INFO("C_Sign on the other session: " << ckRvName(secondRv));
  CHECK(removedRv(secondRv));
  const auto otherRv = other.sign();
  REQUIRE(otherRv);
  INFO("C_Sign in the other client: " << ckRvName(*otherRv));
  CHECK(removedRv(*otherRv));
  CK_SESSION_INFO info{};
  CHECK(removedRv(p11.C_GetSessionInfo(first, &info)));
  CHECK(eventually([&] { return !tokenPresent(p11, *slot); }));

  // dojangd is still there and answers.
  CHECK(dojang::test::processAlive(bench.daemon->pid()));
  if (const char* cli = std::getenv("DOJANG_CLI")) {
    CHECK(bench.run({cli, "status"}).exitCode == 0);
  }

  // Back in: the same client, without C_Finalize, opens a new session, logs in and signs.
  const auto resign = [&](CK_SESSION_HANDLE& session) {
    REQUIRE(eventually([&] { return tokenPresent(p11, *slot); }));
    REQUIRE(ckRvName(prepareSignature(p11, *slot, kKeyId, true, session)) == ckRvName(CKR_OK));
  };
  bench.insert();
  CK_SESSION_HANDLE again = CK_INVALID_HANDLE;
  resign(again);
  std::string signature;
  REQUIRE(ckRvName(signData(p11, again, &signature)) == ckRvName(CKR_OK));
  CHECK(bench.verifies(publicKey, signature));
  // The sessions of the pulled card stay ended: they do not reach the card put back.
  CHECK(removedRv(p11.C_GetSessionInfo(first, &info)));
  CK_MECHANISM rsa{CKM_SHA256_RSA_PKCS, nullptr, 0};
  CHECK(removedRv(p11.C_SignInit(second, &rsa, CK_OBJECT_HANDLE{1})));
  const CK_RV closed = p11.C_CloseSession(first);
  CHECK((closed == CKR_OK || removedRv(closed)));

  // Pulled between C_SignInit and C_Sign (a clean removal this time), then back again.
  CK_MECHANISM mechanism{CKM_SHA256_RSA_PKCS, nullptr, 0};
  CK_RV found = CKR_OK;
  const CK_OBJECT_HANDLE key = findPrivateKey(p11, again, kKeyId, found);
  REQUIRE(p11.C_SignInit(again, &mechanism, key) == CKR_OK);
  bench.card.stop();
  CHECK(eventually([&] { return !tokenPresent(p11, *slot); }));
  const CK_RV afterStop = signData(p11, again);
  INFO("C_Sign after the card was stopped: " << ckRvName(afterStop));
  CHECK(removedRv(afterStop));
  bench.insert();
  CK_SESSION_HANDLE last = CK_INVALID_HANDLE;
  resign(last);
  REQUIRE(ckRvName(signData(p11, last, &signature)) == ckRvName(CKR_OK));
  CHECK(bench.verifies(publicKey, signature));
  CHECK(p11.C_CloseSession(last) == CKR_OK);
  REQUIRE(module.finalize() == CKR_OK);
  CHECK(bench.daemon->stop() == 0);
}

namespace {

// What dojang wrote, read without dojang: `module` (OpenSC or ykcs11, loaded directly by
// pkcs11-tool) lists the certificates of card keys 01 (9A, EC) and 02 (9C, RSA), returns them
// byte for byte, and signs with both keys; openssl verifies each signature against that
// certificate. (Not 9D: OpenSC gives the key management key no signing use.)
void crossCheck(HotplugBench& bench, const std::string& module) {
  const auto objects = bench.tool({"--list-objects", "--type", "cert"}, module);
  REQUIRE(objects.exitCode == 0);
  CHECK(contains(objects.out, "CN=card key 01"));
  CHECK(contains(objects.out, "CN=card key 02"));
  dojang::test::writeFile(bench.path("data"), kSignedData);
  REQUIRE(bench.run({"openssl", "dgst", "-sha256", "-binary", "-out", bench.path("data.sha256"), bench.path("data")})
              .exitCode == 0);
  for (const std::string id : {"01", "02"}) {
    const std::string read = bench.path("read-" + id + ".der");
    REQUIRE(bench.tool({"--read-object", "--type", "cert", "--id", id, "-o", read}, module).exitCode == 0);
    CHECK(dojang::test::readFile(read) == dojang::test::readFile(bench.path("cert-" + id + ".der")));
    const std::string certificateKey = bench.path("certkey-" + id + ".pem");
    REQUIRE(bench.run({"openssl", "x509", "-inform", "DER", "-in", read, "-pubkey", "-noout", "-out", certificateKey})
                .exitCode == 0);
    const std::string signature = bench.path("third-party-sig-" + id);
    const bool ec = id == "01";
    std::vector<std::string> sign = {"--sign", "--id", id, "-o", signature, "--mechanism",
                                     ec ? "ECDSA" : "SHA256-RSA-PKCS"};
    if (ec) {
      sign.insert(sign.end(), {"-i", bench.path("data.sha256"), "--signature-format", "openssl"});
    } else {
      sign.insert(sign.end(), {"-i", bench.path("data")});
    }
    REQUIRE(bench.userTool(sign, module).exitCode == 0);
    CHECK(bench.run({"openssl", "dgst", "-sha256", "-verify", certificateKey, "-signature", signature,
                     bench.path("data")}).exitCode == 0);
  }
}

}  // namespace

TEST_CASE("keys and certificates made by dojang's PIV driver are OpenSC's too: it reads them and signs",
          "[piv][integration][third-party]") {
  HotplugBench bench;
  bench.startDaemon();
  bench.insert();
  bench.waitForToken();
  (void)bench.generate("01", "EC:prime256v1");
  (void)bench.generate("02", "rsa:2048");
  REQUIRE(bench.daemon->stop() == 0);  // nothing of dojang between OpenSC and the card now
  crossCheck(bench, kOpenscModule);
}

TEST_CASE("a YubiKey-like card provisioned through dojang works with ykcs11", "[piv][integration][third-party]") {
  HotplugBench bench("Yubico YubiKey OTP+FIDO+CCID");  // ykcs11 serves only readers named so
  bench.startDaemon();
  bench.insert({"--yubikey-version", "5.4.3", "--serial", "12345678"});
  bench.waitForToken();
  CHECK(contains(bench.tool({"--list-token-slots"}).out, "12345678"));
  (void)bench.generate("01", "EC:prime256v1");
  (void)bench.generate("02", "rsa:2048");
  REQUIRE(bench.daemon->stop() == 0);
  crossCheck(bench, kYkcs11Module);
}

namespace {

// The card in the bench's reader shows as one token in one slot, the PIV driver's: `pkcs11-tool
// -L` through dojang lists one token for the reader and not the vendor module's token model,
// and the slot list has one slot for the reader (not even an empty one of the vendor module).
void shownOnce(HotplugBench& bench, const std::string& vendorModel) {
  bench.waitForToken();
  // The vendor module is polled: give it a few rounds to show the card if it were going to.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const auto listing = bench.tool({"--list-slots"});
  REQUIRE(listing.exitCode == 0);
  CHECK(tokensListedFor(listing.out, bench.reader()) == 1);
  CHECK_FALSE(contains(listing.out, vendorModel));
  CHECK(contains(listing.out, "token model        : PIV"));

  DojangModule module;
  REQUIRE(module.initialize() == CKR_OK);
  auto& p11 = module.functions();
  int slotsForReader = 0;
  for (const CK_SLOT_ID slot : slotList(p11, false)) {
    const auto info = slotInfo(p11, slot);
    if (trimmed(info.slotDescription, sizeof info.slotDescription) == bench.reader()) {
      ++slotsForReader;
      CHECK(trimmed(info.manufacturerID, sizeof info.manufacturerID) == "PC/SC");  // the PIV driver's
      CHECK((info.flags & CKF_TOKEN_PRESENT) != 0);
    }
  }
  CHECK(slotsForReader == 1);
  REQUIRE(module.finalize() == CKR_OK);
}

std::string backendConfig(const std::string& name, const std::string& module) {
  return "[[backend]]\nname = \"" + name + "\"\nmodule = \"" + module + "\"\n";
}

}  // namespace

TEST_CASE("one card, one slot: beside the OpenSC backend, dojangd shows the card once, through the PIV driver",
          "[piv][integration][dedupe]") {
  HotplugBench bench;
  bench.startDaemon(backendConfig("opensc", kOpenscModule), "poll_interval_ms = 100");
  // Inserted while dojangd runs, there already when dojangd starts, and coming with a pcscd
  // started after dojangd (as a reader with its card does when a YubiKey is plugged in).
  bench.insert();
  shownOnce(bench, "PKCS#15 emulated");
  REQUIRE(bench.daemon->stop() == 0);
  bench.daemon->restart();
  shownOnce(bench, "PKCS#15 emulated");
  REQUIRE(bench.daemon->stop() == 0);
  bench.pcscd.stop();
  bench.daemon->restart();
  bench.pcscd.start();
  REQUIRE(bench.card.waitUntilPresent(bench.reader()));
  shownOnce(bench, "PKCS#15 emulated");
  // And again after pcscd restarts under both drivers.
  bench.pcscd.restart();
  REQUIRE(bench.card.waitUntilPresent(bench.reader()));
  shownOnce(bench, "PKCS#15 emulated");
  CHECK(bench.daemon->stop() == 0);
}

TEST_CASE("one card, one slot: beside a ykcs11 backend, a YubiKey shows once, through the PIV driver",
          "[piv][integration][dedupe]") {
  HotplugBench bench("Yubico YubiKey OTP+FIDO+CCID");
  bench.startDaemon(backendConfig("ykcs11", kYkcs11Module), "poll_interval_ms = 100");
  bench.insert({"--yubikey-version", "5.4.3", "--serial", "12345678"});
  shownOnce(bench, "YubiKey YK");
  CHECK(bench.daemon->stop() == 0);
}

TEST_CASE("a card swapped for another at once is seen: an event, and the new card's token", "[piv][integration][hotplug][swap]") {
  HotplugBench bench;
  bench.startDaemon();
  DojangModule module;
  auto& p11 = module.functions();
  REQUIRE(module.initialize() == CKR_OK);
  const auto slot = readerSlot(p11, bench.reader());
  REQUIRE(slot);
  bench.insert();
  REQUIRE(eventually([&] { return tokenPresent(p11, *slot); }));
  const std::string firstSerial = tokenSerial(p11, *slot);
  CK_SLOT_ID none = 0;
  REQUIRE(p11.C_WaitForSlotEvent(CKF_DONT_BLOCK, &none, nullptr) == CKR_OK);  // the insertion
  REQUIRE(p11.C_WaitForSlotEvent(CKF_DONT_BLOCK, &none, nullptr) == CKR_NO_EVENT);

  // Another card (its own state: another CHUID, so another serial) in the same reader, with no
  // pause between the two.
  bench.card.stop();
  bench.card.start(bench.pcscd.port(), bench.dir / "other-card.state");
  REQUIRE(bench.card.waitUntilPresent(bench.reader()));
  const auto [rv, eventSlot] = pollSlotEvent(p11);
  CHECK(ckRvName(rv) == ckRvName(CKR_OK));
  CHECK(eventSlot == *slot);
  CHECK(eventually([&] { return tokenPresent(p11, *slot) && tokenSerial(p11, *slot) != firstSerial; }));
  REQUIRE(module.finalize() == CKR_OK);
  CHECK(bench.daemon->stop() == 0);
}
