#include "bench/piv_world.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <thread>

#include "tests/support/run_command.h"
#include "tests/support/temp_dir.h"

namespace dojang::bench {
namespace {

constexpr const char* kSoftHsm = "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so";

bool socketAccepts(const std::filesystem::path& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return false;
  }
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  const std::string text = path.string();
  if (text.size() >= sizeof address.sun_path) {
    ::close(fd);
    throw std::runtime_error("socket path too long: " + text);
  }
  text.copy(address.sun_path, text.size());
  const bool accepted = ::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0;
  ::close(fd);
  return accepted;
}

std::filesystem::path created(const std::filesystem::path& directory) {
  std::filesystem::create_directories(directory);
  return directory;
}

}  // namespace

PivWorld::PivWorld(const PivWorldOptions& options)
    : m_work(options.work),
      m_module(options.module),
      m_pcscd(created(m_work / "pcscd"), kReaderFriendlyName),
      m_card(created(m_work / "card")) {
  std::fprintf(stderr, "== pcscd up, reader \"%s\" on vpcd port %u\n", m_pcscd.readerName().c_str(),
               static_cast<unsigned>(m_pcscd.port()));
  insertCard();
  startDojangd(options.dojangd);
}

PivWorld::~PivWorld() {
  if (m_dojangd) {
    m_dojangd->stop();
  }
  m_card.stop();
  m_pcscd.stop();
}

void PivWorld::insertCard() {
  m_card.start(m_pcscd.port(), m_work / "card" / "card.state");
}

void PivWorld::removeCard() {
  m_card.stop();
}

void PivWorld::startDojangd(const std::string& binary) {
  const auto daemonDir = created(m_work / "dojangd");
  created(daemonDir / "softhsm-tokens");
  test::writeFile(daemonDir / "softhsm2.conf",
                  "directories.tokendir = " + (daemonDir / "softhsm-tokens").string() +
                      "\nobjectstore.backend = file\nlog.level = ERROR\n");
  test::writeFile(daemonDir / "dojangd.toml",
                  std::string("[pin]\nmode = \"application\"\n[[backend]]\nname = \"softhsm\"\nmodule = \"") +
                      kSoftHsm + "\"\n\n[piv]\nenabled = true\nreaders = [\"" + kReaderFriendlyName +
                      "*\"]\n");
  const auto socket = daemonDir / "sock";
  ::setenv("SOFTHSM2_CONF", (daemonDir / "softhsm2.conf").c_str(), 1);
  ::setenv("DOJANG_SOCKET", socket.c_str(), 1);
  ::setenv("DOJANG_NO_AUTOSTART", "1", 1);
  m_dojangd = std::make_unique<test::BackgroundProcess>(
      std::vector<std::string>{binary, "--foreground", "--socket", socket.string(), "--config",
                               (daemonDir / "dojangd.toml").string()},
      daemonDir / "dojangd.log");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!socketAccepts(socket)) {
    if (!m_dojangd->running()) {
      throw std::runtime_error("dojangd exited: " + test::readFile(daemonDir / "dojangd.log"));
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      throw std::runtime_error("dojangd did not accept connections within 10 s");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

void PivWorld::run(const std::vector<std::string>& argv) const {
  const auto result = test::runCommand(argv);
  if (result.exitCode != 0) {
    std::string line;
    for (const auto& argument : argv) {
      line += argument + " ";
    }
    throw std::runtime_error("$ " + line + "\nexit " + std::to_string(result.exitCode) + "\n" + result.out +
                             result.err);
  }
}

void PivWorld::provisionKey(CK_SLOT_ID slot, const std::string& id, const std::string& keyType) const {
  const auto file = [this, &id](const std::string& name) { return (m_work / (name + "-" + id)).string(); };
  const std::vector<std::string> tool = {"pkcs11-tool", "--module", m_module, "--slot", std::to_string(slot)};
  const auto withTool = [&tool](std::vector<std::string> arguments, bool login) {
    std::vector<std::string> argv = tool;
    if (login) {
      argv.insert(argv.end(), {"--login", "--pin", kPin});
    }
    argv.insert(argv.end(), arguments.begin(), arguments.end());
    return argv;
  };
  run(withTool({"--keypairgen", "--key-type", keyType, "--id", id, "--label", "bench key " + id}, true));
  run(withTool({"--read-object", "--type", "pubkey", "--id", id, "-o", file("pub") + ".der"}, false));
  run({"openssl", "pkey", "-pubin", "-inform", "DER", "-in", file("pub") + ".der", "-out",
       file("pub") + ".pem"});
  const std::string ca = (m_work / "ca").string();
  run({"openssl", "req", "-new", "-key", ca + ".key", "-subj", "/CN=bench card key " + id, "-out",
       file("req") + ".csr"});
  run({"openssl", "x509", "-req", "-in", file("req") + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
       "-CAcreateserial", "-force_pubkey", file("pub") + ".pem", "-days", "30", "-outform", "DER", "-out",
       file("cert") + ".der"});
  run(withTool(
      {"--write-object", file("cert") + ".der", "--type", "cert", "--id", id, "--label", "bench cert " + id},
      true));
}

void PivWorld::provision(CK_SLOT_ID slot) {
  const std::string ca = (m_work / "ca").string();
  run({"openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", ca + ".key"});
  run({"openssl", "req", "-new", "-x509", "-key", ca + ".key", "-subj", "/CN=dojang PIV bench CA", "-days",
       "30", "-out", ca + ".pem"});
  provisionKey(slot, "01", "EC:prime256v1");  // 9A, PIV Authentication
  provisionKey(slot, "02", "rsa:2048");       // 9C, Digital Signature
}

}  // namespace dojang::bench
