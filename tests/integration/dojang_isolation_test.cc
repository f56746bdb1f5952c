// What dojangd keeps apart: one client's login from another client's calls, private key bytes
// from everyone, and the daemon from other users. dojang-pkcs11.so is loaded into this process
// (process A); process B is a forked child that calls C_Initialize itself, so the daemon sees a new
// client; the other user is `nobody` running pkcs11-tool.
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "src/common/cryptoki/cryptoki.h"
#include "src/common/errors/error.h"
#include "tests/support/dojangd_process.h"
#include "tests/support/run_command.h"
#include "tests/support/softhsm_token.h"
#include "tests/support/temp_dir.h"

namespace {

using dojang::test::CommandOptions;
using dojang::ckRvName;
using dojang::test::DojangdProcess;
using dojang::test::DojangModule;
using dojang::test::dojangModulePath;
using dojang::test::readFile;
using dojang::test::runCommand;
using dojang::test::slotWithLabel;
using dojang::test::SoftHsmToken;
using dojang::test::TempDir;

constexpr const char* kTokenLabel = "dojang-isolation";
constexpr const char* kPin = "1234";
// DER of OID 1.2.840.10045.3.1.7 (prime256v1).
constexpr std::array<CK_BYTE, 10> kP256Params = {0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07};

// The test process's view of the daemon: the module loaded and initialised, one RW session on
// the token, logged in as the user.
struct Fixture {
  SoftHsmToken token{{kTokenLabel, kPin, "12345678"}};
  DojangdProcess daemon{token};
  DojangModule module;
  CK_SLOT_ID slot = 0;
  CK_SESSION_HANDLE session = CK_INVALID_HANDLE;

  Fixture() {
    daemon.exportEnv();
    REQUIRE(module.initialize() == CKR_OK);
    slot = slotWithLabel(p11(), kTokenLabel);
    REQUIRE(p11().C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &session) == CKR_OK);
    REQUIRE(login(session) == CKR_OK);
  }

  ~Fixture() {
    if (daemon.running()) {
      (void)stop();
    }
  }

  // Ends this process's use of the module, then stops dojangd; returns its exit status.
  int stop() {
    (void)p11().C_CloseAllSessions(slot);
    (void)module.finalize();
    return daemon.stop();
  }

  [[nodiscard]] CK_FUNCTION_LIST& p11() const { return module.functions(); }

  CK_RV login(CK_SESSION_HANDLE handle) const {
    std::string pin = kPin;
    return p11().C_Login(handle, CKU_USER, reinterpret_cast<CK_UTF8CHAR_PTR>(pin.data()), pin.size());
  }

  struct KeyPair {
    CK_OBJECT_HANDLE publicKey = CK_INVALID_HANDLE;
    CK_OBJECT_HANDLE privateKey = CK_INVALID_HANDLE;
  };

  // A token key pair whose private template asks for the key to be readable: extractable and
  // not sensitive. dojang must not honour that.
  KeyPair generate(CK_KEY_TYPE type, const std::string& label) {
    CK_BBOOL yes = CK_TRUE;
    CK_BBOOL no = CK_FALSE;
    CK_ULONG bits = 2048;
    CK_BYTE exponent[] = {0x01, 0x00, 0x01};
    auto params = kP256Params;
    std::string id = label;
    CK_MECHANISM mechanism{type == CKK_RSA ? CKM_RSA_PKCS_KEY_PAIR_GEN : CKM_EC_KEY_PAIR_GEN, nullptr, 0};
    std::vector<CK_ATTRIBUTE> publicTemplate = {
        {CKA_TOKEN, &yes, sizeof yes},
        {CKA_VERIFY, &yes, sizeof yes},
        {CKA_LABEL, id.data(), id.size()},
        {CKA_ID, id.data(), id.size()},
    };
    if (type == CKK_RSA) {
      publicTemplate.push_back({CKA_MODULUS_BITS, &bits, sizeof bits});
      publicTemplate.push_back({CKA_PUBLIC_EXPONENT, exponent, sizeof exponent});
    } else {
      publicTemplate.push_back({CKA_EC_PARAMS, params.data(), params.size()});
    }
    std::vector<CK_ATTRIBUTE> privateTemplate = {
        {CKA_TOKEN, &yes, sizeof yes},     {CKA_PRIVATE, &yes, sizeof yes},
        {CKA_SIGN, &yes, sizeof yes},      {CKA_LABEL, id.data(), id.size()},
        {CKA_ID, id.data(), id.size()},    {CKA_SENSITIVE, &no, sizeof no},
        {CKA_EXTRACTABLE, &yes, sizeof yes},
    };
    KeyPair pair;
    const CK_RV rv = p11().C_GenerateKeyPair(session, &mechanism, publicTemplate.data(), publicTemplate.size(),
                                              privateTemplate.data(), privateTemplate.size(), &pair.publicKey,
                                              &pair.privateKey);
    INFO("C_GenerateKeyPair rv " << ckRvName(rv) << "\ndojangd log:\n" << daemon.log());
    REQUIRE(rv == CKR_OK);
    return pair;
  }
};

std::vector<CK_OBJECT_HANDLE> findPrivateKeys(CK_FUNCTION_LIST& p11, CK_SESSION_HANDLE session, CK_RV& rv) {
  CK_OBJECT_CLASS keyClass = CKO_PRIVATE_KEY;
  CK_ATTRIBUTE templ[] = {{CKA_CLASS, &keyClass, sizeof keyClass}};
  std::vector<CK_OBJECT_HANDLE> found;
  rv = p11.C_FindObjectsInit(session, templ, 1);
  if (rv != CKR_OK) {
    return found;
  }
  CK_OBJECT_HANDLE batch[16];
  CK_ULONG count = 0;
  while ((rv = p11.C_FindObjects(session, batch, 16, &count)) == CKR_OK && count > 0) {
    found.insert(found.end(), batch, batch + count);
  }
  const CK_RV finalRv = p11.C_FindObjectsFinal(session);
  if (rv == CKR_OK) {
    rv = finalRv;
  }
  return found;
}

// Runs `body` in a forked child, which reports "name=value" lines through `report`; returns the
// child's exit status (or -1 when it had to be killed after a generous wait).
template <class Body>
int runInChild(Body&& body, const std::filesystem::path& report) {
  std::fflush(nullptr);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    std::ofstream out(report);
    const int code = body(out);
    out.close();
    ::_exit(code);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  for (;;) {
    int status = 0;
    const pid_t done = ::waitpid(child, &status, WNOHANG);
    if (done == child) {
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(child, SIGKILL);
      ::waitpid(child, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

std::map<std::string, std::string> readReport(const std::filesystem::path& report) {
  std::map<std::string, std::string> values;
  std::istringstream in(readFile(report));
  std::string line;
  while (std::getline(in, line)) {
    const auto equals = line.find('=');
    if (equals != std::string::npos) {
      values[line.substr(0, equals)] = line.substr(equals + 1);
    }
  }
  return values;
}

}  // namespace

TEST_CASE("a second process cannot use the key another process logged in to", "[integration][isolation]") {
  Fixture a;
  const auto pair = a.generate(CKK_EC, "a-ec");
  CK_RV rv = CKR_OK;
  const auto visibleToA = findPrivateKeys(a.p11(), a.session, rv);
  REQUIRE(rv == CKR_OK);
  REQUIRE(visibleToA.size() == 1);

  // A signs, to show the key works and A's login is live while B tries.
  std::array<CK_BYTE, 32> hash{};
  hash.fill(0x5A);
  CK_MECHANISM ecdsa{CKM_ECDSA, nullptr, 0};
  std::array<CK_BYTE, 128> signature{};
  CK_ULONG signatureLength = signature.size();
  REQUIRE(a.p11().C_SignInit(a.session, &ecdsa, pair.privateKey) == CKR_OK);
  REQUIRE(a.p11().C_Sign(a.session, hash.data(), hash.size(), signature.data(), &signatureLength) == CKR_OK);

  TempDir scratch("dojang-isolation-");
  const auto report = scratch / "child-report.txt";
  const CK_SLOT_ID slot = a.slot;
  const CK_SESSION_HANDLE aSession = a.session;
  CK_FUNCTION_LIST& p11 = a.p11();
  DojangModule& module = a.module;
  const int status = runInChild(
      [&](std::ostream& out) {
        // A new client: the module inherited from A is not initialised in this process.
        CK_ULONG slotCount = 0;
        out << "beforeInit=" << ckRvName(p11.C_GetSlotList(CK_TRUE, nullptr, &slotCount)) << "\n";
        const CK_RV init = module.initialize();
        out << "initialize=" << ckRvName(init) << "\n";
        if (init != CKR_OK) {
          return 10;
        }
        CK_SESSION_HANDLE b = CK_INVALID_HANDLE;
        const CK_RV open = p11.C_OpenSession(slot, CKF_SERIAL_SESSION, nullptr, nullptr, &b);
        out << "openSession=" << ckRvName(open) << "\n";
        if (open != CKR_OK) {
          return 11;
        }
        out << "sameSessionHandle=" << (b == aSession ? "yes" : "no") << "\n";
        CK_SESSION_INFO info{};
        const CK_RV sessionInfo = p11.C_GetSessionInfo(b, &info);
        out << "sessionInfo=" << ckRvName(sessionInfo) << "\n";
        out << "sessionState=" << info.state << "\n";
        CK_RV found = CKR_OK;
        const auto visible = findPrivateKeys(p11, b, found);
        out << "findRv=" << ckRvName(found) << "\n";
        out << "privateKeysFound=" << visible.size() << "\n";
        CK_MECHANISM mechanism{CKM_ECDSA, nullptr, 0};
        const CK_RV signInit = p11.C_SignInit(b, &mechanism, pair.privateKey);
        out << "signInit=" << ckRvName(signInit) << "\n";
        if (signInit == CKR_OK) {
          std::array<CK_BYTE, 32> data{};
          std::array<CK_BYTE, 128> sig{};
          CK_ULONG sigLength = sig.size();
          out << "sign=" << ckRvName(p11.C_Sign(b, data.data(), data.size(), sig.data(), &sigLength)) << "\n";
        }
        CK_BYTE label[64];
        CK_ATTRIBUTE read[] = {{CKA_LABEL, label, sizeof label}};
        out << "readPrivateLabel=" << ckRvName(p11.C_GetAttributeValue(b, pair.privateKey, read, 1)) << "\n";
        // A's session handle, used from B.
        if (b != aSession) {
          CK_MECHANISM again{CKM_ECDSA, nullptr, 0};
          out << "signInitOnASession=" << ckRvName(p11.C_SignInit(aSession, &again, pair.privateKey)) << "\n";
        }
        (void)p11.C_CloseSession(b);
        (void)module.finalize();
        return 0;
      },
      report);
  const auto values = readReport(report);
  std::string all;
  for (const auto& [name, value] : values) {
    all += name + "=" + value + "\n";
  }
  INFO("child exit " << status << "\nchild report:\n" << all << "dojangd log:\n" << a.daemon.log());
  REQUIRE(status == 0);
  CHECK(values.at("beforeInit") == ckRvName(CKR_CRYPTOKI_NOT_INITIALIZED));
  CHECK(values.at("sessionInfo") == ckRvName(CKR_OK));
  CHECK(values.at("sessionState") == std::to_string(CKS_RO_PUBLIC_SESSION));
  CHECK(values.at("findRv") == ckRvName(CKR_OK));
  CHECK(values.at("privateKeysFound") == "0");
  // A's private key does not exist for B: C_SignInit itself refuses it, and so does every read.
  CHECK(values.at("signInit") == ckRvName(CKR_KEY_HANDLE_INVALID));
  CHECK(values.count("sign") == 0);
  CHECK(values.at("readPrivateLabel") == ckRvName(CKR_OBJECT_HANDLE_INVALID));
  if (values.count("signInitOnASession") == 1) {
    CHECK(values.at("signInitOnASession") == ckRvName(CKR_SESSION_HANDLE_INVALID));
  }

  // A is untouched by B's attempts and its ending: still logged in, still signing.
  CK_SESSION_INFO info{};
  REQUIRE(a.p11().C_GetSessionInfo(a.session, &info) == CKR_OK);
  CHECK(info.state == CKS_RW_USER_FUNCTIONS);
  signatureLength = signature.size();
  REQUIRE(a.p11().C_SignInit(a.session, &ecdsa, pair.privateKey) == CKR_OK);
  CHECK(a.p11().C_Sign(a.session, hash.data(), hash.size(), signature.data(), &signatureLength) == CKR_OK);
  CHECK(a.stop() == 0);
}

TEST_CASE("private key values stay sensitive even when the template asks otherwise", "[integration][isolation]") {
  Fixture fixture;
  auto& p11 = fixture.p11();
  struct Case {
    CK_KEY_TYPE type;
    const char* label;
    CK_ATTRIBUTE_TYPE secret;
  };
  for (const Case& key : {Case{CKK_RSA, "loose-rsa", CKA_PRIVATE_EXPONENT}, Case{CKK_EC, "loose-ec", CKA_VALUE}}) {
    INFO("key " << key.label);
    const auto pair = fixture.generate(key.type, key.label);

    std::array<CK_BYTE, 1024> buffer{};
    CK_ATTRIBUTE secret = {key.secret, buffer.data(), buffer.size()};
    CHECK(p11.C_GetAttributeValue(fixture.session, pair.privateKey, &secret, 1) == CKR_ATTRIBUTE_SENSITIVE);
    CHECK(secret.ulValueLen == CK_UNAVAILABLE_INFORMATION);
    // Asking for the size only is refused the same way.
    CK_ATTRIBUTE size = {key.secret, nullptr, 0};
    CHECK(p11.C_GetAttributeValue(fixture.session, pair.privateKey, &size, 1) == CKR_ATTRIBUTE_SENSITIVE);
    CHECK(size.ulValueLen == CK_UNAVAILABLE_INFORMATION);
    if (key.type == CKK_RSA) {
      // Every other private RSA component too.
      for (const CK_ATTRIBUTE_TYPE part : {CKA_PRIME_1, CKA_PRIME_2, CKA_EXPONENT_1, CKA_EXPONENT_2, CKA_COEFFICIENT}) {
        CK_ATTRIBUTE component = {part, buffer.data(), buffer.size()};
        INFO("attribute " << ckRvName(part));
        CHECK(p11.C_GetAttributeValue(fixture.session, pair.privateKey, &component, 1) == CKR_ATTRIBUTE_SENSITIVE);
        CHECK(component.ulValueLen == CK_UNAVAILABLE_INFORMATION);
      }
    }

    // The flags as read back: sensitive, never extractable, generated on the token.
    CK_BBOOL sensitive = CK_FALSE;
    CK_BBOOL extractable = CK_TRUE;
    CK_BBOOL local = CK_FALSE;
    CK_BBOOL alwaysSensitive = CK_FALSE;
    CK_BBOOL neverExtractable = CK_FALSE;
    CK_BYTE label[64];
    CK_ATTRIBUTE flags[] = {
        {CKA_SENSITIVE, &sensitive, sizeof sensitive},
        {CKA_EXTRACTABLE, &extractable, sizeof extractable},
        {CKA_LOCAL, &local, sizeof local},
        {CKA_ALWAYS_SENSITIVE, &alwaysSensitive, sizeof alwaysSensitive},
        {CKA_NEVER_EXTRACTABLE, &neverExtractable, sizeof neverExtractable},
        {key.secret, buffer.data(), buffer.size()},
        {CKA_LABEL, label, sizeof label},
    };
    // One sensitive attribute in a mixed request: the rest are still filled in.
    CHECK(p11.C_GetAttributeValue(fixture.session, pair.privateKey, flags, 7) == CKR_ATTRIBUTE_SENSITIVE);
    CHECK(sensitive == CK_TRUE);
    CHECK(extractable == CK_FALSE);
    CHECK(local == CK_TRUE);
    CHECK(alwaysSensitive == CK_TRUE);
    CHECK(neverExtractable == CK_TRUE);
    CHECK(flags[5].ulValueLen == CK_UNAVAILABLE_INFORMATION);
    CHECK(std::string(reinterpret_cast<const char*>(label), flags[6].ulValueLen) == key.label);

    // And it cannot be made readable afterwards.
    CK_BBOOL no = CK_FALSE;
    CK_BBOOL yes = CK_TRUE;
    CK_ATTRIBUTE loosen[] = {{CKA_SENSITIVE, &no, sizeof no}};
    CHECK(p11.C_SetAttributeValue(fixture.session, pair.privateKey, loosen, 1) == CKR_ATTRIBUTE_READ_ONLY);
    CK_ATTRIBUTE allowExport[] = {{CKA_EXTRACTABLE, &yes, sizeof yes}};
    CHECK(p11.C_SetAttributeValue(fixture.session, pair.privateKey, allowExport, 1) == CKR_ATTRIBUTE_READ_ONLY);
    CK_ATTRIBUTE makePublic[] = {{CKA_PRIVATE, &no, sizeof no}};
    CHECK(p11.C_SetAttributeValue(fixture.session, pair.privateKey, makePublic, 1) == CKR_ATTRIBUTE_READ_ONLY);
    CHECK(p11.C_GetAttributeValue(fixture.session, pair.privateKey, &secret, 1) == CKR_ATTRIBUTE_SENSITIVE);
  }
  CHECK(fixture.stop() == 0);
}

TEST_CASE("dojangd refuses a peer with another uid and keeps serving its own", "[integration][isolation]") {
  Fixture fixture;
  REQUIRE(::geteuid() == 0);  // the test switches to nobody; meson runs it as root here

  // Open the way for nobody as far as the file system goes: only the daemon's check is left.
  REQUIRE(::chmod(fixture.daemon.directory().c_str(), 0755) == 0);
  REQUIRE(::chmod(fixture.daemon.socketPath().c_str(), 0666) == 0);

  CommandOptions options;
  options.env = fixture.daemon.env();
  options.env["HOME"] = "/nonexistent";
  options.timeout = std::chrono::seconds(60);
  const auto result = runCommand({"setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "pkcs11-tool",
                                  "--module", dojangModulePath(), "-L"},
                                 options);
  INFO("pkcs11-tool as nobody: exit " << result.exitCode << "\nstdout: " << result.out << "\nstderr: " << result.err
                                      << "\ndojangd log:\n"
                                      << fixture.daemon.log());
  CHECK(result.exitCode != 0);
  CHECK(result.out.find(kTokenLabel) == std::string::npos);
  // The log line is written before the refused connection is closed; allow for buffering anyway.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (fixture.daemon.log().find("refused a connection from uid 65534") == std::string::npos &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  CHECK(fixture.daemon.log().find("refused a connection from uid 65534") != std::string::npos);

  // Same daemon, still serving: this process (already connected) and a new root client.
  CK_TOKEN_INFO info{};
  CHECK(fixture.p11().C_GetTokenInfo(fixture.slot, &info) == CKR_OK);
  CK_SESSION_HANDLE second = CK_INVALID_HANDLE;
  CHECK(fixture.p11().C_OpenSession(fixture.slot, CKF_SERIAL_SESSION, nullptr, nullptr, &second) == CKR_OK);
  const auto root = runCommand({"pkcs11-tool", "--module", dojangModulePath(), "-L"}, fixture.daemon.env());
  INFO("pkcs11-tool as root: " << root.out << root.err);
  CHECK(root.exitCode == 0);
  CHECK(root.out.find(kTokenLabel) != std::string::npos);
  CHECK(fixture.daemon.running());
  CHECK(fixture.stop() == 0);
}
