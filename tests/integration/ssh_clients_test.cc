// OpenSSH with the key on a dojang token: ssh-keygen -D lists it, `ssh -I dojang-pkcs11.so` logs in
// to a private sshd on 127.0.0.1 with it, and so does ssh through an ssh-agent that loaded the
// module with `ssh-add -s`. ssh-agent takes providers only from an allow-list: the agent here is
// given the build tree's path with -P, and the installed path is checked against the default list.
#include <fnmatch.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "tests/integration/real_clients_fixture.h"
#include "tests/support/background_process.h"
#include "tests/support/tls_peers.h"

namespace {

using dojang::test::BackgroundProcess;
using dojang::test::contains;
using dojang::test::describe;
using dojang::test::readFile;
using dojang::test::RealClientsFixture;
using dojang::test::SshdProcess;
using dojang::test::writeFile;

// ssh-agent's default allow-list for PKCS#11 providers (ssh-agent(1), -P). Its patterns are
// ssh's match_pattern_list: comma separated, and '*' matches '/' too.
constexpr const char* kAgentDefaultAllowList[] = {"/usr/lib*/*", "/usr/local/lib*/*"};

// The ssh client's options that keep the user's ~/.ssh out of the test: no config, no agent
// unless given, no known_hosts but the test's own, no identity files. Not IdentitiesOnly=yes:
// OpenSSH 9.2 then drops the keys of the -I provider too, and offers nothing.
std::vector<std::string> sshArgs(RealClientsFixture& fixture, const SshdProcess& sshd) {
  std::vector<std::string> argv = {"ssh",
                                   "-F",
                                   "none",
                                   "-p",
                                   std::to_string(sshd.port()),
                                   "-o",
                                   "StrictHostKeyChecking=no",
                                   "-o",
                                   "UserKnownHostsFile=" + fixture.file("known_hosts").string(),
                                   "-o",
                                   "IdentityFile=none",
                                   "-o",
                                   "PasswordAuthentication=no",
                                   "-o",
                                   "KbdInteractiveAuthentication=no",
                                   "-o",
                                   "ConnectTimeout=10",
                                   "-o",
                                   "LogLevel=ERROR"};
  return argv;
}

// The token's public keys as ssh-keygen -D prints them: one "type base64 [comment]" per line.
std::string tokenKeys(RealClientsFixture& fixture) {
  const auto result = fixture.run({"ssh-keygen", "-D", fixture.module()});
  INFO("ssh-keygen -D: " << describe(result));
  REQUIRE(result.exitCode == 0);
  return result.out;
}

// A file copied to `target` for a test when nothing is there, with the folders it needed;
// removed again (the file, then the folders it created) when the owner dies.
class InstalledCopy final {
 public:
  InstalledCopy(const std::filesystem::path& source, const std::filesystem::path& target) {
    if (std::filesystem::exists(target)) {
      return;  // a real install: used as it is
    }
    for (auto folder = target.parent_path(); !std::filesystem::exists(folder);
         folder = folder.parent_path()) {
      m_createdFolders.push_back(folder);
    }
    std::filesystem::create_directories(target.parent_path());
    std::filesystem::copy_file(source, target);
    m_copied = target;
  }
  ~InstalledCopy() {
    std::error_code ignored;
    if (!m_copied.empty()) {
      std::filesystem::remove(m_copied, ignored);
    }
    for (const auto& folder : m_createdFolders) {  // deepest first
      std::filesystem::remove(folder, ignored);
    }
  }
  InstalledCopy(const InstalledCopy&) = delete;
  InstalledCopy& operator=(const InstalledCopy&) = delete;

 private:
  std::filesystem::path m_copied;
  std::vector<std::filesystem::path> m_createdFolders;
};

}  // namespace

TEST_CASE("ssh-keygen -D lists the token's keys", "[integration][ssh]") {
  RealClientsFixture fixture;
  const auto keys = tokenKeys(fixture);
  INFO(keys);
  CHECK(contains(keys, "ssh-rsa AAAA"));
  CHECK(contains(keys, "ecdsa-sha2-nistp256 AAAA"));
}

TEST_CASE("ssh -I dojang-pkcs11.so logs in to sshd with the token key", "[integration][ssh]") {
  RealClientsFixture fixture;
  SshdProcess sshd(fixture.file("sshd"));

  // One key at a time in authorized_keys: the login proves that very key signed.
  for (const auto& keyType : {std::string("ssh-rsa"), std::string("ecdsa-sha2-nistp256")}) {
    std::string authorized;
    std::istringstream lines(tokenKeys(fixture));
    for (std::string line; std::getline(lines, line);) {
      if (line.rfind(keyType + " ", 0) == 0) {
        authorized += line + "\n";
      }
    }
    REQUIRE_FALSE(authorized.empty());
    writeFile(sshd.authorizedKeys(), authorized);

    auto argv = sshArgs(fixture, sshd);
    argv.insert(argv.end(), {"-I", fixture.module(), "-o", "HostKeyAlgorithms=ssh-ed25519", "root@127.0.0.1",
                             "echo logged-in-as-$(id -un)"});
    auto env = fixture.pin().sshEnv();
    env["SSH_AUTH_SOCK"] = "";
    const auto result = fixture.run(argv, env);
    INFO(keyType << ": " << describe(result) << "\nsshd:\n"
                 << sshd.log() << "\ndojangd:\n"
                 << fixture.daemon().log());
    CHECK(result.exitCode == 0);
    CHECK(contains(result.out, "logged-in-as-root"));
    CHECK(contains(sshd.log(), "Accepted publickey for root"));
  }
  // The PIN came from dojangd's prompt, which named ssh; ssh itself never asked.
  const auto prompts = fixture.pinentry().prompts();
  REQUIRE_FALSE(prompts.empty());
  CHECK(contains(prompts[0], "ssh (pid "));
  CHECK(fixture.pin().askpassCalls() == 0);
}

TEST_CASE("ssh-add -s loads the module into ssh-agent and ssh logs in through the agent",
          "[integration][ssh]") {
  RealClientsFixture fixture;
  SshdProcess sshd(fixture.file("sshd"));
  writeFile(sshd.authorizedKeys(), tokenKeys(fixture));

  // The agent's helper (ssh-pkcs11-helper) loads the module in the agent's environment: this
  // process's, pointed at the test daemon.
  fixture.daemon().exportEnv();
  ::setenv("SOFTHSM2_CONF", fixture.file("no-softhsm.conf").c_str(), 1);
  const auto socket = fixture.file("agent.sock").string();
  const auto moduleDirectory = std::filesystem::path(fixture.module()).parent_path().string();
  BackgroundProcess agent({"ssh-agent", "-D", "-a", socket, "-P", moduleDirectory + "/*"},
                          fixture.file("agent.log"));
  REQUIRE(dojang::test::waitForFile(socket));

  auto env = fixture.pin().sshEnv();
  env["SSH_AUTH_SOCK"] = socket;
  const auto added = fixture.run({"ssh-add", "-s", fixture.module()}, env);
  INFO("ssh-add -s: " << describe(added) << "\ndojangd:\n" << fixture.daemon().log());
  REQUIRE(added.exitCode == 0);

  const auto listed = fixture.run({"ssh-add", "-L"}, env);
  INFO("ssh-add -L: " << describe(listed));
  CHECK(contains(listed.out, "ssh-rsa AAAA"));
  CHECK(contains(listed.out, "ecdsa-sha2-nistp256 AAAA"));

  auto argv = sshArgs(fixture, sshd);
  argv.insert(argv.end(), {"root@127.0.0.1", "echo through-the-agent"});
  const auto result = fixture.run(argv, env);
  INFO("ssh via the agent: " << describe(result) << "\nsshd:\n" << sshd.log());
  CHECK(result.exitCode == 0);
  CHECK(contains(result.out, "through-the-agent"));
  const auto prompts = fixture.pinentry().prompts();
  REQUIRE_FALSE(prompts.empty());
  CHECK(contains(prompts.back(), "ssh-pkcs11-helper (pid "));
  agent.stop();
}

TEST_CASE("ssh-agent refuses the module outside its allow-list, and the installed path is inside it",
          "[integration][ssh]") {
  RealClientsFixture fixture;
  fixture.daemon().exportEnv();
  const auto socket = fixture.file("agent.sock").string();
  BackgroundProcess agent({"ssh-agent", "-D", "-a", socket}, fixture.file("agent.log"));
  REQUIRE(dojang::test::waitForFile(socket));
  auto env = fixture.pin().sshEnv();
  env["SSH_AUTH_SOCK"] = socket;
  const auto refused = fixture.run({"ssh-add", "-s", fixture.module()}, env);
  INFO("ssh-add -s from the build tree, default allow-list: " << describe(refused));
  CHECK(refused.exitCode != 0);
  agent.stop();

  // meson's install destination of the module (DOJANG_INSTALLED_MODULE, from the build's libdir).
  const char* installed = std::getenv("DOJANG_INSTALLED_MODULE");
  REQUIRE(installed != nullptr);
  INFO("installed module: " << installed);
  bool allowed = false;
  for (const char* pattern : kAgentDefaultAllowList) {
    allowed = allowed || ::fnmatch(pattern, installed, 0) == 0;
  }
  CHECK(allowed);

  // And an agent with its default allow-list takes the module from there: this build's module is
  // put at the installed path for the test (unless a real install is there), and removed after.
  const InstalledCopy copy(fixture.module(), installed);
  BackgroundProcess defaultAgent({"ssh-agent", "-D", "-a", socket + "2"}, fixture.file("agent2.log"));
  REQUIRE(dojang::test::waitForFile(socket + "2"));
  env["SSH_AUTH_SOCK"] = socket + "2";
  const auto added = fixture.run({"ssh-add", "-s", installed}, env);
  INFO("ssh-add -s " << installed << ": " << describe(added)
                     << "\nagent: " << readFile(fixture.file("agent2.log")));
  CHECK(added.exitCode == 0);
  const auto listed = fixture.run({"ssh-add", "-L"}, env);
  CHECK(contains(listed.out, "ecdsa-sha2-nistp256 AAAA"));
  defaultAgent.stop();
}
