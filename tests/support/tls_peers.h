// The servers that real TLS and SSH clients talk to in the integration tests, each on loopback in
// a temporary directory and stopped when its owner dies: a test CA made with openssl (public
// certificates for token keys, a software key only for the servers), nginx requiring a client
// certificate and echoing its subject, NSS selfserv requiring one, and a private sshd.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "tests/support/background_process.h"

namespace dojang::test {

// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then released).
std::uint16_t pickLoopbackPort();

// True once the process `pid` has a listening TCP socket on `port`, read from /proc/PID/net/tcp,
// which is the table of that process's own network namespace. False at the deadline or when the
// process has exited.
bool waitForListening(BackgroundProcess& process, std::uint16_t port,
                      std::chrono::milliseconds patience = std::chrono::seconds(10));

// True once `file` exists (a socket a server creates); false at the deadline.
bool waitForFile(const std::filesystem::path& file,
                 std::chrono::milliseconds patience = std::chrono::seconds(10));

// A certificate authority for one test: an ECDSA P-256 key and a self-signed certificate in
// DIRECTORY, made by openssl. It issues the servers' certificates (with software keys) and client
// certificates for public keys read from a token.
class TestCa final {
 public:
  explicit TestCa(std::filesystem::path directory, const std::string& subject = "/CN=dojang test CA");

  [[nodiscard]] std::filesystem::path certificate() const { return m_directory / "ca.pem"; }
  // DIRECTORY/server.key.pem and DIRECTORY/server.pem for 127.0.0.1 (subjectAltName IP and DNS
  // localhost), made on first use.
  [[nodiscard]] std::filesystem::path serverKey();
  [[nodiscard]] std::filesystem::path serverCertificate();
  // The same key and certificate as a PKCS#12 file (friendly name `nickname`, password `password`).
  [[nodiscard]] std::filesystem::path serverPkcs12(const std::string& nickname, const std::string& password);

  // A TLS client certificate (digitalSignature, clientAuth) for the public key in `publicKeyPem`
  // with `subject` ("/CN=..."), written as DER to `out`.
  void issueClientCertificate(const std::filesystem::path& publicKeyPem, const std::string& subject,
                              const std::filesystem::path& out) const;

 private:
  void makeServerCertificate();
  std::filesystem::path m_directory;
};

struct NginxOptions {
  std::string sslProtocols = "TLSv1.2 TLSv1.3";
};

// nginx -p DIR -c DIR/nginx.conf -g 'daemon off;' as one process (master_process off, so it
// stays root and reads the 0700 temp dir), on 127.0.0.1 and a free port. Every location answers
// 200 with "$ssl_client_s_dn\n"; the access log records the same DN for each request, which is
// how a test sees what a browser that cannot print the page got.
class NginxProcess final {
 public:
  NginxProcess(std::filesystem::path directory, TestCa& ca, NginxOptions options = {});
  ~NginxProcess();
  NginxProcess(const NginxProcess&) = delete;
  NginxProcess& operator=(const NginxProcess&) = delete;

  [[nodiscard]] std::uint16_t port() const noexcept { return m_port; }
  [[nodiscard]] std::string url() const { return "https://127.0.0.1:" + std::to_string(m_port) + "/"; }
  [[nodiscard]] std::filesystem::path accessLog() const { return m_directory / "access.log"; }
  [[nodiscard]] std::filesystem::path errorLog() const { return m_directory / "error.log"; }
  // Both logs, for a failing test's message.
  [[nodiscard]] std::string logs() const;

 private:
  std::filesystem::path m_directory;
  std::uint16_t m_port = 0;
  std::unique_ptr<BackgroundProcess> m_process;
};

// NSS selfserv requiring a client certificate (-r -r), with its own NSS DB holding the server's
// key and certificate and trusting the test CA. selfserv listens on every address and has no
// option to bind one, so it runs in a network namespace of its own (unshare -n) where only lo
// exists; clients reach it with clientPrefix() (nsenter into that namespace). Needs root.
class SelfservProcess final {
 public:
  static constexpr std::uint16_t kPort = 4433;  // its own namespace: every port is free

  SelfservProcess(std::filesystem::path directory, TestCa& ca);
  ~SelfservProcess();
  SelfservProcess(const SelfservProcess&) = delete;
  SelfservProcess& operator=(const SelfservProcess&) = delete;

  // {"nsenter", "-t", PID, "-n", "--"}: put before a client's argv.
  [[nodiscard]] std::vector<std::string> clientPrefix() const;
  // What selfserv printed (-v): the handshakes and the client certificates it saw.
  [[nodiscard]] std::string output() const;
  [[nodiscard]] bool running() { return m_process && m_process->running(); }

 private:
  std::filesystem::path m_directory;
  std::unique_ptr<BackgroundProcess> m_process;
};

// /usr/sbin/sshd -D on 127.0.0.1 and a free port with a private config, host key and
// AuthorizedKeysFile (DIRECTORY/authorized_keys, which the test writes before connecting).
// Public-key authentication only; root may log in (the tests run as root).
class SshdProcess final {
 public:
  explicit SshdProcess(std::filesystem::path directory);
  ~SshdProcess();
  SshdProcess(const SshdProcess&) = delete;
  SshdProcess& operator=(const SshdProcess&) = delete;

  [[nodiscard]] std::uint16_t port() const noexcept { return m_port; }
  [[nodiscard]] std::filesystem::path authorizedKeys() const { return m_directory / "authorized_keys"; }
  [[nodiscard]] std::string log() const;

 private:
  std::filesystem::path m_directory;
  std::uint16_t m_port = 0;
  std::unique_ptr<BackgroundProcess> m_process;
};

}  // namespace dojang::test
