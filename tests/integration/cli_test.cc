// The `dojang` binary end to end: against a fresh SoftHSM token through --module (the way a
// person points it at any vendor module), and `dojang status` against no daemon and a stand-in
// daemon that speaks the wire protocol.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "src/common/cryptoki/cryptoki.h"
#include "src/common/wire/codec.h"
#include "src/common/wire/transport.h"
#include "tests/support/run_command.h"
#include "tests/support/softhsm_token.h"
#include "tests/support/temp_dir.h"

namespace {

using dojang::test::CommandResult;
using dojang::test::runCommand;
using dojang::test::SoftHsmToken;
using dojang::test::TempDir;
using nlohmann::json;

constexpr const char* kTokenLabel = "dojang 토큰";
constexpr const char* kPin = "1234";

std::string dojangBinary() {
  const char* path = std::getenv("DOJANG_CLI");
  REQUIRE(path != nullptr);
  return path;
}

CommandResult runDojang(std::vector<std::string> args, const std::map<std::string, std::string>& env = {}) {
  args.insert(args.begin(), dojangBinary());
  return runCommand(args, env);
}

void requireOk(const CommandResult& result, const std::string& what) {
  INFO(what << "\nstdout: " << result.out << "\nstderr: " << result.err);
  REQUIRE(result.exitCode == 0);
}

// A self-signed EC certificate with one policy OID, written in DER; its public key next to it.
void makeCertificate(const TempDir& dir, const std::string& name, const std::string& subject,
                     const std::string& policy, int days) {
  const auto key = (dir / (name + ".key.pem")).string();
  requireOk(runCommand({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-keyout", key, "-utf8", "-subj", subject, "-addext",
                        "certificatePolicies=" + policy, "-days", std::to_string(days), "-outform", "DER",
                        "-out", (dir / (name + ".der")).string()}),
            "openssl req");
  requireOk(runCommand({"openssl", "pkey", "-in", key, "-pubout", "-outform", "DER", "-out",
                        (dir / (name + ".pub.der")).string()}),
            "openssl pkey");
}

void writeObject(const SoftHsmToken& token, const std::string& file, const std::string& type,
                 const std::string& id, const std::string& label) {
  requireOk(runCommand({"pkcs11-tool", "--module", token.modulePath(), "--token-label", token.label(),
                        "--login", "--pin", token.pin(), "--write-object", file, "--type", type, "--id",
                        id, "--label", label}),
            "pkcs11-tool --write-object " + file);
}

// One token with two certificates:
//   01 "서명용 인증서": SignKorea 범용 개인, 200 days, its public key beside it (CKA_ID 01)
//   02 "은행용": yessign 범용 개인, 10 days, no key objects
struct Fixture {
  SoftHsmToken token{{kTokenLabel, kPin, "12345678"}};
  TempDir files{"dojang-cli-test-"};

  Fixture() {
    makeCertificate(files, "signkorea", "/C=KR/O=SignKorea/OU=개인/OU=XYZ은행/CN=홍길동()0001234567890123",
                    "1.2.410.200004.5.1.1.5", 200);
    makeCertificate(files, "yessign", "/C=KR/O=yessign/OU=personal4IB/CN=김철수()0009876543210987",
                    "1.2.410.200005.1.1.1", 10);
    writeObject(token, (files / "signkorea.der").string(), "cert", "01", "서명용 인증서");
    writeObject(token, (files / "signkorea.pub.der").string(), "pubkey", "01", "서명용 공개키");
    writeObject(token, (files / "yessign.der").string(), "cert", "02", "은행용");
  }

  [[nodiscard]] std::vector<std::string> module() const { return {"--module", token.modulePath()}; }
};

json parse(const CommandResult& result) {
  INFO("stdout: " << result.out << "\nstderr: " << result.err);
  REQUIRE(result.exitCode == 0);
  return json::parse(result.out);
}

const json& certificateWithLabel(const json& document, const std::string& label) {
  for (const auto& entry : document.at("certificates")) {
    if (entry.at("label") == label) {
      return entry;
    }
  }
  FAIL("no certificate labelled " << label << " in " << document.dump());
  throw std::logic_error("unreachable");
}

}  // namespace

TEST_CASE("dojang tokens lists the SoftHSM token", "[cli]") {
  Fixture fixture;
  auto args = fixture.module();
  args.insert(args.begin(), {"tokens", "--json"});
  const json document = parse(runDojang(args));
  const json* found = nullptr;
  for (const auto& token : document.at("tokens")) {
    if (token.at("label") == kTokenLabel) {
      found = &token;
    }
  }
  REQUIRE(found != nullptr);
  CHECK(found->at("manufacturer") == "SoftHSM project");
  CHECK(found->at("model") == "SoftHSM v2");
  CHECK_FALSE(found->at("serial").get<std::string>().empty());
  CHECK(found->at("certificates") == 2);
  CHECK(found->at("flags").at("loginRequired") == true);
  CHECK(found->at("flags").at("pinInitialized") == true);
  CHECK(found->at("flags").at("pinLocked") == false);
  if (fixture.token.slotId()) {
    CHECK(found->at("slot") == *fixture.token.slotId());
  }

  auto human = fixture.module();
  human.insert(human.begin(), "tokens");
  const auto table = runDojang(human);
  requireOk(table, "dojang tokens");
  CHECK(table.out.find("LABEL") != std::string::npos);
  CHECK(table.out.find(kTokenLabel) != std::string::npos);
  CHECK(table.out.find("login required") != std::string::npos);
}

TEST_CASE("dojang certs recognises Korean certificate types and days left", "[cli]") {
  Fixture fixture;
  auto args = fixture.module();
  args.insert(args.begin(), {"certs", "--json"});
  const json document = parse(runDojang(args));
  REQUIRE(document.at("certificates").size() == 2);

  const json& signKorea = certificateWithLabel(document, "서명용 인증서");
  CHECK(signKorea.at("token") == kTokenLabel);
  CHECK(signKorea.at("id") == "01");
  CHECK(signKorea.at("koreanType") == "SignKorea 범용 개인");
  CHECK(signKorea.at("ca") == "SignKorea");
  CHECK(signKorea.at("policyOid") == "1.2.410.200004.5.1.1.5");
  CHECK(signKorea.at("subject") == "CN=홍길동()0001234567890123,OU=XYZ은행,OU=개인,O=SignKorea,C=KR");
  CHECK(signKorea.at("issuer") == signKorea.at("subject"));
  CHECK(signKorea.at("keyAlgorithm") == "EC P-256");
  const auto signKoreaDays = signKorea.at("daysLeft").get<int>();
  CHECK((signKoreaDays == 199 || signKoreaDays == 200));
  CHECK(signKorea.at("renewal") == "ok");
  CHECK(signKorea.at("privateKey") == "public-key-found");
  CHECK(signKorea.at("sha256Fingerprint").get<std::string>().size() == 95);

  const json& yessign = certificateWithLabel(document, "은행용");
  CHECK(yessign.at("koreanType") == "yessign 범용 개인");
  const auto yessignDays = yessign.at("daysLeft").get<int>();
  CHECK((yessignDays == 9 || yessignDays == 10));
  CHECK(yessign.at("renewal") == "renew now");
  // No key object visible without login, and SoftHSM requires login: only a login can tell.
  CHECK(yessign.at("privateKey") == "unknown");

  auto human = fixture.module();
  human.insert(human.begin(), "certs");
  const auto table = runDojang(human);
  requireOk(table, "dojang certs");
  CHECK(table.out.find("서명용 인증서") != std::string::npos);
  CHECK(table.out.find("SignKorea 범용 개인") != std::string::npos);
  CHECK(table.out.find("renew now") != std::string::npos);
  CHECK(table.out.find("unknown (login to check)") != std::string::npos);
  // A public key with the certificate's CKA_ID says where the private key is, not "probably".
  CHECK(table.out.find("hidden until login (public key found)") != std::string::npos);
  CHECK(table.out.find("probably") == std::string::npos);
}

TEST_CASE("dojang certs --token with a label no token has is an error naming the tokens", "[cli]") {
  Fixture fixture;
  auto args = fixture.module();
  args.insert(args.begin(), {"certs", "--token", "nosuch"});
  const auto human = runDojang(args);
  CHECK(human.exitCode == 1);
  CHECK(human.out.empty());
  CHECK(human.err.find("no token labelled \"nosuch\"") != std::string::npos);
  CHECK(human.err.find(kTokenLabel) != std::string::npos);
  CHECK(std::count(human.err.begin(), human.err.end(), '\n') == 1);

  auto machine = fixture.module();
  machine.insert(machine.begin(), {"certs", "--json", "--token", "nosuch"});
  const auto failed = runDojang(machine);
  CHECK(failed.exitCode == 1);
  const json error = json::parse(failed.err);
  CHECK(error.at("token") == "nosuch");
  const auto& present = error.at("tokensPresent");
  CHECK(std::find(present.begin(), present.end(), kTokenLabel) != present.end());

  auto right = fixture.module();
  right.insert(right.begin(), {"certs", "--json", "--token", kTokenLabel});
  CHECK(parse(runDojang(right)).at("certificates").size() == 2);
}

TEST_CASE("dojang certs --expiring keeps only certificates near expiry", "[cli]") {
  Fixture fixture;
  auto args = fixture.module();
  args.insert(args.begin(), {"certs", "--json", "--expiring", "30"});
  const json document = parse(runDojang(args));
  REQUIRE(document.at("certificates").size() == 1);
  CHECK(document.at("certificates")[0].at("label") == "은행용");

  auto none = fixture.module();
  none.insert(none.begin(), {"certs", "--expiring", "5"});
  const auto empty = runDojang(none);
  requireOk(empty, "dojang certs --expiring 5");
  CHECK(empty.out.find("No certificates expire within 5 days") != std::string::npos);
}

TEST_CASE("the module can come from DOJANG_MODULE", "[cli]") {
  Fixture fixture;
  const json document = parse(runDojang({"tokens", "--json"}, {{"DOJANG_MODULE", fixture.token.modulePath()}}));
  CHECK(document.at("module") == fixture.token.modulePath());
}

TEST_CASE("dojang status without a daemon exits 3 and names the socket", "[cli]") {
  TempDir dir("dojang-cli-status-");
  const std::string socket = (dir / "absent.sock").string();
  const auto human = runDojang({"status"}, {{"DOJANG_SOCKET", socket}});
  CHECK(human.exitCode == 3);
  CHECK(human.out.empty());
  CHECK(human.err.find("not running") != std::string::npos);
  CHECK(human.err.find(socket) != std::string::npos);
  CHECK(std::count(human.err.begin(), human.err.end(), '\n') == 1);

  const auto flag = runDojang({"status", "--socket", socket});
  CHECK(flag.exitCode == 3);
  CHECK(flag.err.find(socket) != std::string::npos);

  const auto machine = runDojang({"status", "--json"}, {{"DOJANG_SOCKET", socket}});
  CHECK(machine.exitCode == 3);
  const json error = json::parse(machine.err);
  CHECK(error.at("error").get<std::string>().find("not running") != std::string::npos);
  CHECK(error.at("socket") == socket);
}

namespace {

// Just enough of dojangd for `dojang status`: one connection, Hello then DaemonStatus.
class FakeDaemon final {
 public:
  explicit FakeDaemon(std::string path) : m_path(std::move(path)) {
    m_listener = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(m_listener >= 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    REQUIRE(m_path.size() < sizeof address.sun_path);
    std::memcpy(address.sun_path, m_path.c_str(), m_path.size() + 1);
    REQUIRE(::bind(m_listener, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0);
    REQUIRE(::listen(m_listener, 4) == 0);
    m_thread = std::thread([this] { serve(); });
  }
  FakeDaemon(const FakeDaemon&) = delete;
  FakeDaemon& operator=(const FakeDaemon&) = delete;
  ~FakeDaemon() {
    ::shutdown(m_listener, SHUT_RDWR);  // wakes accept()
    m_thread.join();
    ::close(m_listener);
  }

  [[nodiscard]] std::vector<std::string> calls() {
    std::lock_guard lock(m_mutex);
    return m_calls;
  }
  [[nodiscard]] dojang::wire::HelloRequest hello() {
    std::lock_guard lock(m_mutex);
    return m_hello;
  }

 private:
  void serve() {
    using namespace dojang::wire;
    const int fd = ::accept(m_listener, nullptr, nullptr);
    if (fd < 0) {
      return;
    }
    SocketTransport transport(fd);
    try {
      for (;;) {
        Bytes payload;
        transport.receive(payload);
        Decoder decoder(payload);
        std::uint16_t id = 0;
        decoder.read(id);
        Bytes frame;
        if (id == static_cast<std::uint16_t>(CallId::Hello)) {
          HelloRequest request;
          decoder.read(request);
          HelloReply reply;
          reply.daemonInstance = Bytes(16, 7);
          reply.daemonPid = 4242;
          encodeReply(0, &reply, frame);
          std::lock_guard lock(m_mutex);
          m_hello = request;
          m_calls.emplace_back("Hello");
        } else if (id == static_cast<std::uint16_t>(CallId::DaemonStatus)) {
          DaemonStatusReply reply;
          reply.version = "9.8.7";
          reply.pid = 4242;
          reply.uptimeSeconds = 3 * 3600 + 25 * 60;
          reply.clients = 2;
          reply.connections = 3;
          reply.sessions = 5;
          reply.backends.push_back({"softhsm", "/usr/lib/softhsm/libsofthsm2.so", "loaded"});
          reply.slots.push_back({11, "softhsm", true, "은행 토큰", 1, 6, "present", ""});
          reply.slots.push_back({12, "softhsm", false, "", 0, 0, "not initialised",
                                 "the token is not initialised (C_OpenSession: CKR_TOKEN_NOT_RECOGNIZED)"});
          encodeReply(0, &reply, frame);
          std::lock_guard lock(m_mutex);
          m_calls.emplace_back("DaemonStatus");
        } else {
          encodeReply<Empty>(CKR_FUNCTION_NOT_SUPPORTED, nullptr, frame);
        }
        transport.send(frame);
      }
    } catch (const std::exception&) {
      // the client hung up
    }
  }

  std::string m_path;
  int m_listener = -1;
  std::thread m_thread;
  std::mutex m_mutex;
  std::vector<std::string> m_calls;
  dojang::wire::HelloRequest m_hello;
};

}  // namespace

TEST_CASE("dojang status shows what the daemon reports", "[cli]") {
  TempDir dir("dojang-cli-status-");
  const std::string socket = (dir / "pkcs11.sock").string();
  json document;
  {
    FakeDaemon daemon(socket);
    const auto result = runDojang({"status", "--json", "--socket", socket});
    document = parse(result);
    CHECK(daemon.calls() == std::vector<std::string>{"Hello", "DaemonStatus"});
    const auto hello = daemon.hello();
    CHECK(hello.program == "dojang");
    CHECK(hello.clientId.size() == 16);
    CHECK(hello.pid != 0);
    CHECK(hello.protocolVersion == dojang::wire::kProtocolVersion);
  }
  CHECK(document.at("running") == true);
  CHECK(document.at("version") == "9.8.7");
  CHECK(document.at("pid") == 4242);
  CHECK(document.at("uptimeSeconds") == 3 * 3600 + 25 * 60);
  CHECK(document.at("clients") == 2);
  CHECK(document.at("connections") == 3);
  CHECK(document.at("sessions") == 5);
  REQUIRE(document.at("backends").size() == 1);
  CHECK(document.at("backends")[0].at("state") == "loaded");
  REQUIRE(document.at("slots").size() == 2);
  CHECK(document.at("slots")[0].at("tokenLabel") == "은행 토큰");
  CHECK(document.at("slots")[0].at("loggedInClients") == 1);
  CHECK(document.at("slots")[0].at("cachedObjects") == 6);
  CHECK(document.at("slots")[1].at("tokenPresent") == false);
  CHECK(document.at("slots")[1].at("state") == "not initialised");
  CHECK(document.at("slots")[1].at("problem").get<std::string>().find("CKR_TOKEN_NOT_RECOGNIZED") !=
        std::string::npos);
  CHECK(document.at("slots")[0].at("problem").is_null());

  FakeDaemon daemon(socket + "2");
  const auto human = runDojang({"status"}, {{"DOJANG_SOCKET", socket + "2"}});
  requireOk(human, "dojang status");
  CHECK(human.out.find("9.8.7") != std::string::npos);
  CHECK(human.out.find("3h 25m") != std::string::npos);
  CHECK(human.out.find("은행 토큰") != std::string::npos);
  CHECK(human.out.find("/usr/lib/softhsm/libsofthsm2.so") != std::string::npos);
  // The slot that cannot be used says why, instead of reading as "absent".
  CHECK(human.out.find("not initialised") != std::string::npos);
  CHECK(human.out.find("slot 12: the token is not initialised") != std::string::npos);
  CHECK(human.out.find("absent") == std::string::npos);
  // A count of clients, not a yes/no.
  CHECK(human.out.find("CLIENTS LOGGED IN") != std::string::npos);
}

TEST_CASE("usage errors exit 2 and other failures exit 1, one line on stderr", "[cli]") {
  const auto noCommand = runDojang({});
  CHECK(noCommand.exitCode == 2);
  CHECK(std::count(noCommand.err.begin(), noCommand.err.end(), '\n') == 1);

  const auto unknownFlag = runDojang({"certs", "--bogus"});
  CHECK(unknownFlag.exitCode == 2);
  CHECK(unknownFlag.err.find("--bogus") != std::string::npos);

  const auto jsonUsage = runDojang({"certs", "--json", "--expiring", "soon"});
  CHECK(jsonUsage.exitCode == 2);
  CHECK(json::parse(jsonUsage.err).contains("error"));

  const auto missingModule = runDojang({"tokens", "--module", "/nonexistent/module.so"});
  CHECK(missingModule.exitCode == 1);
  CHECK(missingModule.err.find("/nonexistent/module.so") != std::string::npos);
  CHECK(std::count(missingModule.err.begin(), missingModule.err.end(), '\n') == 1);

  const auto notAModule = runDojang({"tokens", "--json", "--module", "/etc/hostname"});
  CHECK(notAModule.exitCode == 1);
  CHECK(json::parse(notAModule.err).contains("error"));

  const auto help = runDojang({"--help"});
  CHECK(help.exitCode == 0);
  CHECK(help.out.find("certs") != std::string::npos);
}

TEST_CASE("without --module the CLI loads dojang-pkcs11.so from its build tree", "[cli]") {
  Fixture fixture;
  // build/src/cli/dojang finds build/pkcs11/dojang-pkcs11.so; here that name points at SoftHSM.
  TempDir tree("dojang-cli-tree-");
  std::filesystem::create_directories(tree / "src" / "cli");
  std::filesystem::create_directories(tree / "pkcs11");
  std::filesystem::copy_file(dojangBinary(), tree / "src" / "cli" / "dojang");
  std::filesystem::create_symlink(fixture.token.modulePath(), tree / "pkcs11" / "dojang-pkcs11.so");
  const auto result = runCommand({(tree / "src" / "cli" / "dojang").string(), "tokens", "--json"},
                                 std::map<std::string, std::string>{{"DOJANG_MODULE", ""}});
  const json document = parse(result);
  CHECK(document.at("module") == (tree / "pkcs11" / "dojang-pkcs11.so").string());
  CHECK(document.at("tokens").size() >= 1);
}
