// Helpers for the dojang-ca tests: temp directories, child processes (the CA server, openssl,
// curl) and certificate inspection. Real processes on 127.0.0.1; each test owns its CA directory.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace dojang::ca::test {

class TempDir final {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  [[nodiscard]] const std::string& path() const noexcept { return m_path; }
  [[nodiscard]] std::string file(const std::string& name) const { return m_path + "/" + name; }

 private:
  std::string m_path;
};

struct CommandResult final {
  int exitCode = -1;
  std::string output;  // stdout and stderr interleaved
};

// Runs argv[0] from PATH (or a path), waits, captures output. No shell: arguments go as they are.
CommandResult run(const std::vector<std::string>& argv);

// Path of the dojang-ca binary under test (from the DOJANG_CA environment variable).
std::string dojangCa();

// `dojang-ca serve` on 127.0.0.1 with a free port, stopped (SIGTERM) on destruction.
class CaServer final {
 public:
  CaServer(const std::string& caDir, const std::vector<std::string>& extraArgs = {});
  ~CaServer();
  CaServer(const CaServer&) = delete;
  CaServer& operator=(const CaServer&) = delete;

  [[nodiscard]] int port() const noexcept { return m_port; }
  [[nodiscard]] std::string hostPort() const { return "127.0.0.1:" + std::to_string(m_port); }
  [[nodiscard]] std::string url(const std::string& path) const { return "http://" + hostPort() + path; }
  [[nodiscard]] bool running();
  // Stops the server; returns its exit status (0 after a clean SIGTERM shutdown).
  int stop();
  [[nodiscard]] std::string log() const;

 private:
  pid_t m_pid = -1;
  int m_stdout = -1;
  int m_port = 0;
  std::string m_logPath;
};

// A TCP client of the CA that sent a request line and one header and then stalls: an idle
// keep-alive peer, a dead client or a slowloris. Closed on destruction.
class StalledClient final {
 public:
  explicit StalledClient(int port);
  ~StalledClient();
  StalledClient(const StalledClient&) = delete;
  StalledClient& operator=(const StalledClient&) = delete;

  // Waits up to `seconds` for the server to give up on this client (any answer, then EOF).
  [[nodiscard]] bool closedByServerWithin(int seconds);

 private:
  int m_fd = -1;
};

std::string readFile(const std::string& path);
void writeFile(const std::string& path, const std::string& bytes);
void generateEcKey(const std::string& path);

// Facts about a PEM certificate, read with OpenSSL.
struct CertificateFacts final {
  std::string serialHex;
  std::string subjectUtf8;   // RFC 2253
  std::string firstPolicyOid;
  int64_t notBefore = 0;
  int64_t notAfter = 0;
  bool keyUsageDigitalSignature = false;
  bool keyUsageNonRepudiation = false;
  std::string crlUrl;
  bool hasSubjectKeyId = false;
  bool hasAuthorityKeyId = false;
  bool cnIsUtf8String = false;
};
CertificateFacts inspectCertificate(const std::string& pemPath);
// True when the certificate certifies the private key in keyPath.
bool certificateMatchesKey(const std::string& certPemPath, const std::string& keyPemPath);
// Serial numbers (hex) in a CRL file, DER or PEM.
std::vector<std::string> crlSerials(const std::string& crlPath);

}  // namespace dojang::ca::test
