#include "tests/support/tls_peers.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "tests/support/run_command.h"
#include "tests/support/temp_dir.h"

namespace dojang::test {

namespace {

void mustRun(const std::vector<std::string>& argv, const std::string& what) {
  const auto result = runCommand(argv);
  if (result.exitCode != 0) {
    throw std::runtime_error(what + " failed (exit " + std::to_string(result.exitCode) + "): " + result.out +
                             result.err);
  }
}

std::string readIfThere(const std::filesystem::path& file) {
  std::ifstream in(file);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// One line of /proc/PID/net/tcp{,6}: "sl local_address rem_address st ...", addresses as
// HEXADDR:HEXPORT, state 0A = LISTEN.
bool listensIn(const std::filesystem::path& table, std::uint16_t port) {
  std::ifstream in(table);
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string slot, local, remote, state;
    fields >> slot >> local >> remote >> state;
    const auto colon = local.rfind(':');
    if (colon != std::string::npos && state == "0A" &&
        std::stoul(local.substr(colon + 1), nullptr, 16) == port) {
      return true;
    }
  }
  return false;
}

}  // namespace

std::uint16_t pickLoopbackPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    throw std::runtime_error("socket() failed");
  }
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  const bool bound = ::bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0 &&
                     ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0;
  ::close(fd);
  if (!bound) {
    throw std::runtime_error("no free port on 127.0.0.1");
  }
  return ntohs(address.sin_port);
}

bool waitForListening(BackgroundProcess& process, std::uint16_t port, std::chrono::milliseconds patience) {
  const auto proc = std::filesystem::path("/proc") / std::to_string(process.pid()) / "net";
  const auto deadline = std::chrono::steady_clock::now() + patience;
  while (std::chrono::steady_clock::now() < deadline) {
    if (!process.running()) {
      return false;
    }
    if (listensIn(proc / "tcp", port) || listensIn(proc / "tcp6", port)) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

bool waitForFile(const std::filesystem::path& file, std::chrono::milliseconds patience) {
  const auto deadline = std::chrono::steady_clock::now() + patience;
  while (!std::filesystem::exists(file)) {
    if (std::chrono::steady_clock::now() >= deadline) {
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

TestCa::TestCa(std::filesystem::path directory, const std::string& subject)
    : m_directory(std::move(directory)) {
  std::filesystem::create_directories(m_directory);
  mustRun({"openssl",
           "req",
           "-x509",
           "-newkey",
           "ec",
           "-pkeyopt",
           "ec_paramgen_curve:P-256",
           "-nodes",
           "-keyout",
           (m_directory / "ca.key.pem").string(),
           "-subj",
           subject,
           "-days",
           "2",
           "-addext",
           "basicConstraints=critical,CA:TRUE",
           "-addext",
           "keyUsage=critical,keyCertSign,cRLSign",
           "-out",
           certificate().string()},
          "openssl req (test CA)");
}

std::filesystem::path TestCa::serverKey() {
  makeServerCertificate();
  return m_directory / "server.key.pem";
}

std::filesystem::path TestCa::serverCertificate() {
  makeServerCertificate();
  return m_directory / "server.pem";
}

void TestCa::makeServerCertificate() {
  const auto certificatePath = m_directory / "server.pem";
  if (std::filesystem::exists(certificatePath)) {
    return;
  }
  const auto request = m_directory / "server.csr.pem";
  mustRun(
      {"openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
       (m_directory / "server.key.pem").string(), "-subj", "/CN=127.0.0.1", "-out", request.string()},
      "openssl req (server)");
  const auto extensions = m_directory / "server.ext";
  writeFile(extensions,
            "basicConstraints=CA:FALSE\n"
            "keyUsage=critical,digitalSignature\n"
            "extendedKeyUsage=serverAuth\n"
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
  mustRun({"openssl", "x509", "-req", "-in", request.string(), "-CA", certificate().string(), "-CAkey",
           (m_directory / "ca.key.pem").string(), "-CAcreateserial", "-days", "2", "-extfile",
           extensions.string(), "-out", certificatePath.string()},
          "openssl x509 (server)");
}

std::filesystem::path TestCa::serverPkcs12(const std::string& nickname, const std::string& password) {
  const auto out = m_directory / (nickname + ".p12");
  mustRun(
      {"openssl", "pkcs12", "-export", "-inkey", serverKey().string(), "-in", serverCertificate().string(),
       "-name", nickname, "-passout", "pass:" + password, "-out", out.string()},
      "openssl pkcs12 -export");
  return out;
}

void TestCa::issueClientCertificate(const std::filesystem::path& publicKeyPem, const std::string& subject,
                                    const std::filesystem::path& out) const {
  // openssl x509 -req wants a request; one signed by the CA's key carries only the subject, and
  // -force_pubkey puts the token's public key in the certificate.
  const auto request = m_directory / "client.csr.pem";
  mustRun({"openssl", "req", "-new", "-key", (m_directory / "ca.key.pem").string(), "-subj", subject, "-out",
           request.string()},
          "openssl req (client placeholder)");
  const auto extensions = m_directory / "client.ext";
  writeFile(extensions,
            "basicConstraints=CA:FALSE\n"
            "keyUsage=critical,digitalSignature\n"
            "extendedKeyUsage=clientAuth\n");
  mustRun({"openssl",
           "x509",
           "-req",
           "-in",
           request.string(),
           "-CA",
           certificate().string(),
           "-CAkey",
           (m_directory / "ca.key.pem").string(),
           "-CAcreateserial",
           "-force_pubkey",
           publicKeyPem.string(),
           "-days",
           "2",
           "-extfile",
           extensions.string(),
           "-outform",
           "DER",
           "-out",
           out.string()},
          "openssl x509 -force_pubkey (client)");
}

NginxProcess::NginxProcess(std::filesystem::path directory, TestCa& ca, NginxOptions options)
    : m_directory(std::move(directory)), m_port(pickLoopbackPort()) {
  std::filesystem::create_directories(m_directory / "temp");
  const auto temp = (m_directory / "temp").string();
  std::ostringstream conf;
  conf << "master_process off;\n"
       << "pid " << (m_directory / "nginx.pid").string() << ";\n"
       << "error_log " << errorLog().string() << " info;\n"
       << "events { worker_connections 64; }\n"
       << "http {\n"
       << "  log_format dojang '$request $status dn=\"$ssl_client_s_dn\" verify=$ssl_client_verify';\n"
       << "  access_log " << accessLog().string() << " dojang;\n"
       << "  client_body_temp_path " << temp << "/body;\n"
       << "  proxy_temp_path " << temp << "/proxy;\n"
       << "  fastcgi_temp_path " << temp << "/fastcgi;\n"
       << "  uwsgi_temp_path " << temp << "/uwsgi;\n"
       << "  scgi_temp_path " << temp << "/scgi;\n"
       << "  server {\n"
       << "    listen 127.0.0.1:" << m_port << " ssl;\n"
       << "    ssl_certificate " << ca.serverCertificate().string() << ";\n"
       << "    ssl_certificate_key " << ca.serverKey().string() << ";\n"
       << "    ssl_protocols " << options.sslProtocols << ";\n"
       << "    ssl_client_certificate " << ca.certificate().string() << ";\n"
       << "    ssl_verify_client on;\n"
       << "    default_type text/plain;\n"
       << "    location / { return 200 \"$ssl_client_s_dn\\n\"; }\n"
       << "  }\n"
       << "}\n";
  const auto confPath = m_directory / "nginx.conf";
  writeFile(confPath, conf.str());
  m_process = std::make_unique<BackgroundProcess>(
      std::vector<std::string>{"nginx", "-p", m_directory.string(), "-e", errorLog().string(), "-c",
                               confPath.string(), "-g", "daemon off;"},
      m_directory / "nginx.out");
  if (!waitForListening(*m_process, m_port)) {
    m_process->stop();
    throw std::runtime_error("nginx did not listen on 127.0.0.1:" + std::to_string(m_port) + ": " + logs() +
                             readIfThere(m_directory / "nginx.out"));
  }
}

NginxProcess::~NginxProcess() {
  if (m_process) {
    m_process->stop();
  }
}

std::string NginxProcess::logs() const {
  return "nginx error log:\n" + readIfThere(errorLog()) + "nginx access log:\n" + readIfThere(accessLog());
}

SelfservProcess::SelfservProcess(std::filesystem::path directory, TestCa& ca)
    : m_directory(std::move(directory)) {
  const auto db = m_directory / "nssdb";
  std::filesystem::create_directories(db);
  const std::string dbArg = "sql:" + db.string();
  mustRun({"certutil", "-N", "-d", dbArg, "--empty-password"}, "certutil -N (selfserv)");
  mustRun({"pk12util", "-i", ca.serverPkcs12("servercert", "dojang").string(), "-d", dbArg, "-W", "dojang",
           "-K", ""},
          "pk12util -i (selfserv)");
  mustRun({"certutil", "-A", "-d", dbArg, "-n", "dojang-test-ca", "-t", "CT,,", "-a", "-i",
           ca.certificate().string()},
          "certutil -A (selfserv trusts the test CA)");
  // unshare without --fork execs in place, and so does the shell: the pid is selfserv's.
  const std::string command = "ip link set lo up && exec selfserv -D -v -p " + std::to_string(kPort) +
                              " -d " + dbArg + " -n servercert -r -r";
  m_process = std::make_unique<BackgroundProcess>(
      std::vector<std::string>{"unshare", "-n", "sh", "-c", command}, m_directory / "selfserv.out");
  if (!waitForListening(*m_process, kPort)) {
    m_process->stop();
    throw std::runtime_error("selfserv did not listen: " + output());
  }
}

SelfservProcess::~SelfservProcess() {
  if (m_process) {
    m_process->stop();
  }
}

std::vector<std::string> SelfservProcess::clientPrefix() const {
  return {"nsenter", "-t", std::to_string(m_process->pid()), "-n", "--"};
}

std::string SelfservProcess::output() const {
  return readIfThere(m_directory / "selfserv.out");
}

SshdProcess::SshdProcess(std::filesystem::path directory)
    : m_directory(std::move(directory)), m_port(pickLoopbackPort()) {
  std::filesystem::create_directories(m_directory);
  const auto hostKey = m_directory / "host_key";
  mustRun({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", hostKey.string()}, "ssh-keygen (host key)");
  writeFile(authorizedKeys(), "");
  // sshd refuses to start without its privilege separation directory (made by the package's
  // service, which the tests never start).
  std::filesystem::create_directories("/run/sshd");
  const auto conf = m_directory / "sshd_config";
  writeFile(conf, "ListenAddress 127.0.0.1:" + std::to_string(m_port) +
                      "\n"
                      "HostKey " +
                      hostKey.string() +
                      "\n"
                      "PidFile " +
                      (m_directory / "sshd.pid").string() +
                      "\n"
                      "AuthorizedKeysFile " +
                      authorizedKeys().string() +
                      "\n"
                      "StrictModes no\n"
                      "UsePAM no\n"
                      "PermitRootLogin yes\n"
                      "PubkeyAuthentication yes\n"
                      "PasswordAuthentication no\n"
                      "KbdInteractiveAuthentication no\n"
                      "AuthenticationMethods publickey\n"
                      "LogLevel VERBOSE\n"
                      "Subsystem sftp internal-sftp\n");
  m_process = std::make_unique<BackgroundProcess>(
      std::vector<std::string>{"/usr/sbin/sshd", "-D", "-e", "-f", conf.string()}, m_directory / "sshd.log");
  if (!waitForListening(*m_process, m_port)) {
    m_process->stop();
    throw std::runtime_error("sshd did not listen on 127.0.0.1:" + std::to_string(m_port) + ": " + log());
  }
}

SshdProcess::~SshdProcess() {
  if (m_process) {
    m_process->stop();
  }
}

std::string SshdProcess::log() const {
  return readIfThere(m_directory / "sshd.log");
}

}  // namespace dojang::test
