// The renewal engine's CMP client and token keys against real peers: a fresh SoftHSM token behind
// a real dojangd, every token access through dojang-pkcs11.so (raw PKCS#11 for key generation,
// libp11 for the keys' EVP_PKEYs, both in this process), and dojang-ca serving CMP on 127.0.0.1.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/bn.h>
#include <openssl/pem.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <catch2/catch.hpp>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "drivers/token/secure_bytes.h"
#include "src/common/cryptoki/cryptoki.h"
#include "src/common/errors/error.h"
#include "src/common/module_loader/module_library.h"
#include "src/common/ossl/owners.h"
#include "src/renewal/cmp/cmp_client.h"
#include "src/renewal/token_keys/token_keys.h"
#include "tests/ca/ca_test_support.h"
#include "tests/support/background_process.h"
#include "tests/support/dojangd_process.h"
#include "tests/support/softhsm_token.h"

namespace {

namespace cmp = dojang::renewal::cmp;
using dojang::ErrorKind;
using dojang::SecureBytes;
using dojang::renewal::TokenKeys;
using dojang::test::DojangdProcess;
using dojang::test::SoftHsmToken;

constexpr const char* kLabel = "dojang-renewal";
constexpr const char* kPin = "1234";
constexpr long kFee = 4400;  // signkorea-general-personal's fee_krw
constexpr const char* kSubject = "cn=홍길동()0001234567890123,ou=개인";
constexpr std::array<CK_BYTE, 10> kP256Params = {0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07};
const std::array<std::uint8_t, 1> kFirstId = {0x01};
const std::array<std::uint8_t, 1> kSecondId = {0x02};

enum class KeyType { Ec, Rsa };

// A token behind dojangd, driven through dojang-pkcs11.so the way the engine does: raw PKCS#11
// (ModuleLibrary) initialised and logged in first, libp11 (TokenKeys) beside it.
struct Token {
  SoftHsmToken softhsm{{kLabel, kPin, "12345678"}};
  DojangdProcess daemon{softhsm};
  dojang::ModuleLibrary module;
  CK_FUNCTION_LIST* p11 = nullptr;
  CK_SESSION_HANDLE session = CK_INVALID_HANDLE;

  Token() {
    daemon.exportEnv();
    module = dojang::ModuleLibrary(dojang::test::dojangModulePath(), "dojang-pkcs11.so");
    p11 = module.functionList();
    auto args = dojang::osLockingArgs();
    REQUIRE(module.initialize(p11, &args) == CKR_OK);
    const CK_SLOT_ID slot = dojang::test::slotWithLabel(*p11, kLabel);
    REQUIRE(p11->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &session) ==
            CKR_OK);
    REQUIRE(p11->C_Login(session, CKU_USER, reinterpret_cast<CK_UTF8CHAR*>(const_cast<char*>(kPin)), 4) ==
            CKR_OK);
  }

  // C_GenerateKeyPair through the module: sensitive, never extractable, on the token.
  void generate(KeyType type, std::span<const std::uint8_t> id) const {
    CK_BBOOL yes = CK_TRUE;
    CK_BBOOL no = CK_FALSE;
    CK_ULONG bits = 2048;
    std::array<CK_BYTE, 3> exponent = {0x01, 0x00, 0x01};
    auto* idBytes = const_cast<std::uint8_t*>(id.data());
    std::vector<CK_ATTRIBUTE> publicTemplate = {
        {CKA_TOKEN, &yes, sizeof yes}, {CKA_VERIFY, &yes, sizeof yes}, {CKA_ID, idBytes, id.size()}};
    std::vector<CK_ATTRIBUTE> privateTemplate = {
        {CKA_TOKEN, &yes, sizeof yes},     {CKA_PRIVATE, &yes, sizeof yes}, {CKA_SENSITIVE, &yes, sizeof yes},
        {CKA_EXTRACTABLE, &no, sizeof no}, {CKA_SIGN, &yes, sizeof yes},    {CKA_ID, idBytes, id.size()}};
    CK_MECHANISM mechanism{CKM_EC_KEY_PAIR_GEN, nullptr, 0};
    if (type == KeyType::Ec) {
      publicTemplate.push_back({CKA_EC_PARAMS, const_cast<CK_BYTE*>(kP256Params.data()), kP256Params.size()});
    } else {
      mechanism.mechanism = CKM_RSA_PKCS_KEY_PAIR_GEN;
      publicTemplate.push_back({CKA_MODULUS_BITS, &bits, sizeof bits});
      publicTemplate.push_back({CKA_PUBLIC_EXPONENT, exponent.data(), exponent.size()});
    }
    CK_OBJECT_HANDLE publicKey = CK_INVALID_HANDLE;
    CK_OBJECT_HANDLE privateKey = CK_INVALID_HANDLE;
    REQUIRE(p11->C_GenerateKeyPair(session, &mechanism, publicTemplate.data(), publicTemplate.size(),
                                   privateTemplate.data(), privateTemplate.size(), &publicKey,
                                   &privateKey) == CKR_OK);
  }

  [[nodiscard]] CK_RV sessionState(CK_STATE* state) const {
    CK_SESSION_INFO info{};
    const CK_RV rv = p11->C_GetSessionInfo(session, &info);
    *state = info.state;
    return rv;
  }
};

// dojang-ca: a fresh CA directory, serving on 127.0.0.1 with a free port; new certificates are
// valid 20 days, inside the renewal window, so kur works at once.
struct Ca {
  dojang::ca::test::TempDir dir;
  bool initialised = init(dir.path());
  dojang::ca::test::CaServer server{dir.path(), {"--test-validity-days", "20"}};

  static bool init(const std::string& path) {
    const auto result = dojang::ca::test::run({dojang::ca::test::dojangCa(), "init", "--dir", path});
    INFO(result.output);
    REQUIRE(result.exitCode == 0);
    return true;
  }

  [[nodiscard]] cmp::Endpoint endpoint() const {
    return {"127.0.0.1",
            server.port(),
            "/",
            dir.file("ca.cert.pem"),
            std::chrono::seconds(20),
            std::chrono::seconds(60)};
  }

  [[nodiscard]] nlohmann::json json(const std::vector<std::string>& arguments) const {
    std::vector<std::string> argv = {dojang::ca::test::dojangCa()};
    argv.insert(argv.end(), arguments.begin(), arguments.end());
    const auto result = dojang::ca::test::run(argv);
    INFO(result.output);
    REQUIRE(result.exitCode == 0);
    const auto start = result.output.find_first_of("[{");
    REQUIRE(start != std::string::npos);
    return nlohmann::json::parse(result.output.substr(start));
  }

  // (reference number, authorization code)
  [[nodiscard]] std::pair<std::string, std::string> enrollCode() const {
    const auto code = json({"enroll-code", "--dir", dir.path(), "--profile", "signkorea-general-personal",
                            "--subject", kSubject, "--json"});
    REQUIRE(code.at("fee_krw").get<long>() == kFee);
    return {code.at("reference").get<std::string>(), code.at("authorization_code").get<std::string>()};
  }

  [[nodiscard]] nlohmann::json list() const { return json({"list", "--dir", dir.path(), "--json"}); }
  [[nodiscard]] nlohmann::json ledger() const { return json({"ledger", "--dir", dir.path(), "--json"}); }
};

std::string serialHex(const X509& certificate) {
  dojang::BignumPtr number(ASN1_INTEGER_to_BN(X509_get0_serialNumber(&certificate), nullptr));
  dojang::OpensslStringPtr text(BN_bn2hex(number.get()));
  std::string out(text.get());
  for (char& c : out) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

std::string lower(std::string text) {
  for (char& c : text) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return text;
}

const nlohmann::json& listed(const nlohmann::json& list, const X509& certificate) {
  for (const auto& entry : list) {
    if (lower(entry.at("serial").get<std::string>()) == serialHex(certificate)) {
      return entry;
    }
  }
  FAIL("certificate " << serialHex(certificate) << " is not in dojang-ca list: " << list.dump());
  throw std::logic_error("unreachable");
}

bool certifies(const X509& certificate, EVP_PKEY& key) {
  return EVP_PKEY_eq(X509_get0_pubkey(&certificate), &key) == 1;
}

// A hook that records what it saw, as the engine's journal would.
struct Journal {
  std::vector<std::string> serials;
  cmp::BeforeConfirm hook() {
    return [this](X509& issued) { serials.push_back(serialHex(issued)); };
  }
};

cmp::Issued enrolFirst(const Ca& ca, EVP_PKEY& key, Journal& journal) {
  const auto [reference, code] = ca.enrollCode();
  return cmp::enrol(ca.endpoint(), reference, SecureBytes(code), key, kFee, journal.hook());
}

void renewOnTheToken(KeyType type) {
  Token token;
  token.generate(type, kFirstId);
  Ca ca;
  TokenKeys keys(dojang::test::dojangModulePath(), {"", kLabel});
  keys.login(SecureBytes(std::string_view(kPin)));
  dojang::PkeyPtr oldKey = keys.privateKey(kFirstId);
  Journal journal;
  const cmp::Issued first = enrolFirst(ca, *oldKey, journal);
  REQUIRE(certifies(*first.certificate, *oldKey));

  // The next key appears while libp11 is loaded: generated through the raw module.
  token.generate(type, kSecondId);
  dojang::PkeyPtr newKey = keys.privateKey(kSecondId);
  const auto started = std::chrono::steady_clock::now();
  const cmp::Issued renewed =
      cmp::keyUpdate(ca.endpoint(), *oldKey, *first.certificate, *newKey, kFee, journal.hook());
  const auto took =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
  std::fprintf(stderr, "kur round trip (%s): %lld ms\n", type == KeyType::Ec ? "P-256" : "RSA-2048",
               static_cast<long long>(took.count()));

  CHECK(certifies(*renewed.certificate, *newKey));
  CHECK_FALSE(certifies(*renewed.certificate, *oldKey));
  CHECK(X509_NAME_cmp(X509_get_subject_name(renewed.certificate.get()),
                      X509_get_subject_name(first.certificate.get())) == 0);
  CHECK(journal.serials ==
        std::vector<std::string>{serialHex(*first.certificate), serialHex(*renewed.certificate)});

  const auto list = ca.list();
  CHECK(listed(list, *renewed.certificate).at("origin") == "renewal");
  CHECK(listed(list, *renewed.certificate).at("status") == "valid");
  const auto ledger = ca.ledger();
  REQUIRE(ledger.size() == 2);
  for (const auto& charge : ledger) {
    CHECK(charge.at("amount_krw").get<long>() == kFee);
  }
  CHECK(lower(ledger[1].at("serial").get<std::string>()) == serialHex(*renewed.certificate));
  CHECK(ledger[1].at("kind") == "renewal");
}

// A loopback TCP socket on a free port, bound (and listening when asked); returns (fd, port).
std::pair<int, int> loopbackSocket(bool listening) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
  REQUIRE((!listening || ::listen(fd, 4) == 0));
  socklen_t length = sizeof address;
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0);
  return {fd, ntohs(address.sin_port)};
}

// enrol() against an endpoint that cannot serve: Retryable, saying `expected`, before `patience`.
void expectRetryable(const cmp::Endpoint& endpoint, EVP_PKEY& key, const std::string& expected,
                     std::chrono::seconds patience) {
  Journal journal;
  const auto started = std::chrono::steady_clock::now();
  try {
    (void)cmp::enrol(endpoint, "1234567890", SecureBytes(std::string_view("CODE")), key, kFee,
                     journal.hook());
    FAIL("enrol succeeded against " << endpoint.host << ":" << endpoint.port);
  } catch (const dojang::Error& error) {
    INFO(error.what());
    CHECK(error.kind() == ErrorKind::Retryable);
    CHECK_THAT(error.what(), Catch::Contains(expected));
  }
  CHECK(std::chrono::steady_clock::now() - started < patience);
  CHECK(journal.serials.empty());
}

// One P-256 key on the token, its EVP_PKEY through libp11, and a CA; members die in reverse, so
// the key goes before TokenKeys, which goes before the raw module (token_keys.h).
struct OneKey {
  Token token;
  Ca ca;
  TokenKeys keys{dojang::test::dojangModulePath(), {"", kLabel}};
  dojang::PkeyPtr key;

  OneKey() {
    token.generate(KeyType::Ec, kFirstId);
    keys.login(SecureBytes(std::string_view(kPin)));
    key = keys.privateKey(kFirstId);
  }
};

}  // namespace

TEST_CASE("enrol: ir with the reference code gives a certificate for the token's P-256 key",
          "[renewal_cmp]") {
  Token token;
  token.generate(KeyType::Ec, kFirstId);
  Ca ca;
  TokenKeys keys(dojang::test::dojangModulePath(), {"", kLabel});
  // The raw module logged this process in already: libp11 takes CKR_USER_ALREADY_LOGGED_IN.
  keys.login(SecureBytes(std::string_view(kPin)));
  CK_STATE state = 0;
  REQUIRE(token.sessionState(&state) == CKR_OK);
  CHECK(state == CKS_RW_USER_FUNCTIONS);  // libp11 left the raw session and its login alone

  dojang::PkeyPtr key = keys.privateKey(kFirstId);
  CHECK(EVP_PKEY_get_base_id(key.get()) == EVP_PKEY_EC);
  Journal journal;
  const cmp::Issued issued = enrolFirst(ca, *key, journal);

  CHECK(certifies(*issued.certificate, *key));
  REQUIRE(journal.serials == std::vector<std::string>{serialHex(*issued.certificate)});
  const auto list = ca.list();
  const auto& entry = listed(list, *issued.certificate);
  CHECK(entry.at("status") == "valid");
  CHECK(entry.at("origin") == "issue");
  CHECK(ca.ledger().size() == 1);
  REQUIRE(token.sessionState(&state) == CKR_OK);
  CHECK(state == CKS_RW_USER_FUNCTIONS);
}

TEST_CASE("keyUpdate: kur with a second token key (P-256)", "[renewal_cmp]") {
  renewOnTheToken(KeyType::Ec);
}

TEST_CASE("keyUpdate: kur with RSA-2048 token keys", "[renewal_cmp]") {
  renewOnTheToken(KeyType::Rsa);
}

TEST_CASE("p10crUpdate: a CSR signed on the token, protected by the old key", "[renewal_cmp]") {
  Token token;
  token.generate(KeyType::Ec, kFirstId);
  token.generate(KeyType::Ec, kSecondId);
  Ca ca;
  TokenKeys keys(dojang::test::dojangModulePath(), {"", kLabel});
  keys.login(SecureBytes(std::string_view(kPin)));
  dojang::PkeyPtr oldKey = keys.privateKey(kFirstId);
  dojang::PkeyPtr newKey = keys.privateKey(kSecondId);
  Journal journal;
  const cmp::Issued first = enrolFirst(ca, *oldKey, journal);
  const cmp::Issued renewed =
      cmp::p10crUpdate(ca.endpoint(), *oldKey, *first.certificate, *newKey, kFee, journal.hook());
  CHECK(certifies(*renewed.certificate, *newKey));
  CHECK(X509_NAME_cmp(X509_get_subject_name(renewed.certificate.get()),
                      X509_get_subject_name(first.certificate.get())) == 0);
  CHECK(listed(ca.list(), *renewed.certificate).at("origin") == "renewal");
}

TEST_CASE("the CA down or silent: Retryable, naming the endpoint, within the timeouts", "[renewal_cmp]") {
  Token token;
  token.generate(KeyType::Ec, kFirstId);
  TokenKeys keys(dojang::test::dojangModulePath(), {"", kLabel});
  keys.login(SecureBytes(std::string_view(kPin)));
  dojang::PkeyPtr key = keys.privateKey(kFirstId);
  dojang::ca::test::TempDir dir;
  REQUIRE(Ca::init(dir.path()));

  SECTION("connection refused") {
    const auto [fd, port] = loopbackSocket(false);
    ::close(fd);  // nobody listens there now
    const cmp::Endpoint endpoint{
        "127.0.0.1", port, "/", dir.file("ca.cert.pem"), std::chrono::seconds(2), std::chrono::seconds(4)};
    expectRetryable(endpoint, *key, "cannot connect to the CA at 127.0.0.1:" + std::to_string(port),
                    std::chrono::seconds(6));
  }
  SECTION("a listener that never answers") {
    const auto [fd, port] = loopbackSocket(true);  // the kernel accepts; nobody reads or answers
    const cmp::Endpoint endpoint{
        "127.0.0.1", port, "/", dir.file("ca.cert.pem"), std::chrono::seconds(1), std::chrono::seconds(3)};
    expectRetryable(endpoint, *key, "the CA at 127.0.0.1:" + std::to_string(port) + " did not answer",
                    std::chrono::seconds(5));
    ::close(fd);
  }
}

TEST_CASE("a CA rejection is Refused and carries the CA's words", "[renewal_cmp]") {
  OneKey setup;
  const Ca& ca = setup.ca;
  EVP_PKEY* key = setup.key.get();
  const auto [reference, code] = ca.enrollCode();
  Journal journal;

  SECTION("a wrong fee") {
    try {
      (void)cmp::enrol(ca.endpoint(), reference, SecureBytes(code), *key, 1000, journal.hook());
      FAIL("a wrong fee was accepted");
    } catch (const cmp::CaRejection& rejection) {
      INFO(rejection.what());
      CHECK(rejection.kind() == ErrorKind::Refused);
      CHECK(rejection.pkiStatus() == OSSL_CMP_PKISTATUS_rejection);
      CHECK(rejection.failInfo() == std::vector<std::string>{"badRequest"});
      REQUIRE_FALSE(rejection.statusText().empty());
      CHECK_THAT(rejection.statusText().front(), Catch::Contains("fee of 4,400 KRW"));
      CHECK_THAT(rejection.what(), Catch::Contains("fee of 4,400 KRW") && Catch::Contains("badRequest"));
    }
  }
  SECTION("a wrong authorization code") {
    try {
      (void)cmp::enrol(ca.endpoint(), reference, SecureBytes(std::string_view("WRONGWRONGWRONG1")), *key,
                       kFee, journal.hook());
      FAIL("a wrong authorization code was accepted");
    } catch (const cmp::CaRejection& rejection) {
      INFO(rejection.what());
      CHECK(rejection.kind() == ErrorKind::Refused);
      CHECK(rejection.failInfo() == std::vector<std::string>{"badMessageCheck"});
      CHECK_FALSE(rejection.statusText().empty());
    }
  }
  CHECK(journal.serials.empty());
  CHECK(ca.list().empty());
  CHECK(ca.ledger().empty());
  // Rejections change nothing: the code still works.
  const cmp::Issued issued =
      cmp::enrol(ca.endpoint(), reference, SecureBytes(code), *key, kFee, journal.hook());
  CHECK(certifies(*issued.certificate, *key));
}

TEST_CASE("BeforeConfirm throwing rejects the certificate and the error propagates", "[renewal_cmp]") {
  OneKey setup;
  const Ca& ca = setup.ca;
  EVP_PKEY* key = setup.key.get();
  const auto [reference, code] = ca.enrollCode();
  std::string seen;
  const cmp::BeforeConfirm journalFull = [&seen](X509& issued) {
    seen = serialHex(issued);
    throw std::runtime_error("journal is full");
  };
  CHECK_THROWS_WITH(cmp::enrol(ca.endpoint(), reference, SecureBytes(code), *key, kFee, journalFull),
                    "journal is full");
  REQUIRE_FALSE(seen.empty());
  // The CA revokes a certificate the client rejected in certConf (docs/ca.md): listed, revoked.
  const auto list = ca.list();
  REQUIRE(list.size() == 1);
  CHECK(lower(list[0].at("serial").get<std::string>()) == seen);
  CHECK(list[0].at("status") == "revoked");
}

TEST_CASE("TokenKeys::login with a wrong PIN is PinIncorrect, and not retried", "[renewal_cmp]") {
  Token token;
  token.generate(KeyType::Ec, kFirstId);
  REQUIRE(token.p11->C_Logout(token.session) == CKR_OK);  // so that the PIN goes to the token
  TokenKeys keys(dojang::test::dojangModulePath(), {"", kLabel});
  try {
    keys.login(SecureBytes(std::string_view("0000")));
    FAIL("a wrong PIN was accepted");
  } catch (const dojang::Error& error) {
    INFO(error.what());
    CHECK(error.kind() == ErrorKind::PinIncorrect);
    CHECK(error.rv() == CKR_PIN_INCORRECT);
  }
  CHECK_THROWS_AS(keys.privateKey(kFirstId), dojang::Error);  // still not logged in
  keys.login(SecureBytes(std::string_view(kPin)));
  CHECK(keys.privateKey(kFirstId) != nullptr);
  CHECK_THROWS_WITH(keys.privateKey(kSecondId), Catch::Contains("no private key with CKA_ID 02"));
}

TEST_CASE("TokenKeys on its own initialises the module; destroying it ends the process's use",
          "[renewal_cmp]") {
  Token token;
  token.generate(KeyType::Ec, kFirstId);
  {
    TokenKeys keys(dojang::test::dojangModulePath(), {"", kLabel});
    keys.login(SecureBytes(std::string_view(kPin)));
    dojang::PkeyPtr key = keys.privateKey(kFirstId);
    CHECK(key != nullptr);
  }
  // Documented in token_keys.h: libp11 closed this process's sessions and finalised the module,
  // so the raw owner's C_Finalize (in its destructor) answers CKR_CRYPTOKI_NOT_INITIALIZED.
  CK_STATE state = 0;
  CHECK(token.sessionState(&state) == CKR_CRYPTOKI_NOT_INITIALIZED);
  auto args = dojang::osLockingArgs();
  REQUIRE(token.p11->C_Initialize(&args) == CKR_OK);  // the way back for a raw owner
  CHECK(token.p11->C_Finalize(nullptr) == CKR_OK);
}

TEST_CASE("TokenKeys for a token that is not there says so", "[renewal_cmp]") {
  Token token;
  CHECK_THROWS_WITH(TokenKeys(dojang::test::dojangModulePath(), {"", "no such token"}),
                    Catch::Contains("no token 'no such token'"));
  // Even a TokenKeys that failed to construct has closed the sessions and finalised (token_keys.h).
  CK_STATE state = 0;
  CHECK(token.sessionState(&state) == CKR_CRYPTOKI_NOT_INITIALIZED);
}

namespace {

void runOpenssl(const std::vector<std::string>& arguments) {
  std::vector<std::string> argv = {"openssl"};
  argv.insert(argv.end(), arguments.begin(), arguments.end());
  const auto result = dojang::ca::test::run(argv);
  INFO(result.output);
  REQUIRE(result.exitCode == 0);
}

bool acceptsConnections(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  const bool connected = ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
  ::close(fd);
  return connected;
}

}  // namespace

TEST_CASE("keyUpdate against OpenSSL's mock CMP server, a second and independent peer", "[renewal_cmp]") {
  OneKey one;
  Journal journal;
  const cmp::Issued first = enrolFirst(one.ca, *one.key, journal);
  one.token.generate(KeyType::Ec, kSecondId);
  const dojang::PkeyPtr newKey = one.keys.privateKey(kSecondId);

  // The mock server answers with a fixed certificate, and the client accepts only one for the new
  // key: so the test certifies the new token key's public half with a throwaway CA.
  dojang::ca::test::TempDir dir;
  {
    dojang::BioPtr out(BIO_new_file(dir.file("new.pub.pem").c_str(), "w"));
    REQUIRE(out);
    REQUIRE(PEM_write_bio_PUBKEY(out.get(), newKey.get()) == 1);
  }
  const std::vector<std::string> ec = {"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"};
  const auto withEc = [&](std::vector<std::string> arguments) {
    arguments.insert(arguments.begin() + 1, ec.begin(), ec.end());
    return arguments;
  };
  dojang::OpensslStringPtr caName(X509_NAME_oneline(X509_get_issuer_name(first.certificate.get()), nullptr,
                                                    0));  // "/C=KR/O=dojang/CN=..."
  runOpenssl(withEc({"req", "-x509", "-keyout", dir.file("mock-ca.key"), "-out", dir.file("mock-ca.pem"),
                     "-subj", caName.get(), "-days", "2"}));
  runOpenssl(withEc({"req", "-keyout", dir.file("throwaway.key"), "-out", dir.file("renewed.csr"), "-subj",
                     "/CN=renewed by the mock server"}));
  runOpenssl({"x509", "-req", "-in", dir.file("renewed.csr"), "-CA", dir.file("mock-ca.pem"), "-CAkey",
              dir.file("mock-ca.key"), "-set_serial", "0x" + serialHex(*first.certificate), "-force_pubkey",
              dir.file("new.pub.pem"), "-days", "2", "-out", dir.file("renewed.pem")});

  const auto [probe, port] = loopbackSocket(false);
  ::close(probe);
  // It checks the request's protection (the old token key, certified by dojang-ca) against
  // -srv_trusted, and signs its answers with its own key, which the client trusts. OpenSSL 3.0's
  // mock server also wants the kur's oldCertID (issuer and serial of the old certificate) to name
  // the certificate it returns, so that one carries dojang-ca's name and the old serial.
  dojang::test::BackgroundProcess server({"openssl", "cmp", "-port", std::to_string(port), "-srv_cert",
                                          dir.file("mock-ca.pem"), "-srv_key", dir.file("mock-ca.key"),
                                          "-srv_trusted", one.ca.dir.file("ca.cert.pem"), "-rsp_cert",
                                          dir.file("renewed.pem")});
  for (int i = 0; i < 200 && !acceptsConnections(port); ++i) {
    ::usleep(25000);
  }
  REQUIRE(acceptsConnections(port));

  const cmp::Endpoint endpoint{
      "127.0.0.1", port, "/", dir.file("mock-ca.pem"), std::chrono::seconds(10), std::chrono::seconds(30)};
  const cmp::Issued renewed =
      cmp::keyUpdate(endpoint, *one.key, *first.certificate, *newKey, std::nullopt, journal.hook());
  CHECK(certifies(*renewed.certificate, *newKey));
  dojang::BioPtr in(BIO_new_file(dir.file("renewed.pem").c_str(), "r"));
  dojang::X509Ptr expected(PEM_read_bio_X509(in.get(), nullptr, nullptr, nullptr));
  REQUIRE(expected);
  CHECK(X509_cmp(renewed.certificate.get(), expected.get()) == 0);
  // The hook saw it before certConf, as with dojang-ca.
  CHECK(journal.serials.back() == serialHex(*expected));
}
