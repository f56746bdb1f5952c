#include "tests/ca/ca_test_support.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/bn.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>

#include "src/common/ossl/owners.h"

extern char** environ;

namespace dojang::ca::test {
namespace {


std::vector<char*> argvPointers(const std::vector<std::string>& argv) {
  std::vector<char*> pointers;
  for (const std::string& argument : argv) {
    pointers.push_back(const_cast<char*>(argument.c_str()));
  }
  pointers.push_back(nullptr);
  return pointers;
}

X509Ptr loadCertificate(const std::string& path) {
  BioPtr bio(BIO_new_file(path.c_str(), "r"));
  if (!bio) {
    throw std::runtime_error("cannot open " + path);
  }
  X509Ptr certificate(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!certificate) {
    throw std::runtime_error("not a PEM certificate: " + path);
  }
  return certificate;
}

int64_t toEpoch(const ASN1_TIME* time) {
  struct tm parts {};
  if (ASN1_TIME_to_tm(time, &parts) != 1) {
    throw std::runtime_error("bad ASN1_TIME");
  }
  return static_cast<int64_t>(timegm(&parts));
}

std::string bignumHex(const ASN1_INTEGER* serial) {
  BignumPtr number(ASN1_INTEGER_to_BN(serial, nullptr));
  OpensslStringPtr hex(BN_bn2hex(number.get()));
  return hex.get();
}

}  // namespace

TempDir::TempDir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "dojang-ca-test-XXXXXX").string();
  if (mkdtemp(pattern.data()) == nullptr) {
    throw std::runtime_error("mkdtemp failed");
  }
  m_path = pattern;
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(m_path, ignored);
}

CommandResult run(const std::vector<std::string>& argv) {
  int pipeFds[2];
  if (pipe2(pipeFds, O_CLOEXEC) != 0) {
    throw std::runtime_error("pipe failed");
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipeFds[1], 1);
  posix_spawn_file_actions_adddup2(&actions, pipeFds[1], 2);
  std::vector<char*> pointers = argvPointers(argv);
  pid_t pid = -1;
  const int status = posix_spawnp(&pid, pointers[0], &actions, nullptr, pointers.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(pipeFds[1]);
  if (status != 0) {
    close(pipeFds[0]);
    throw std::runtime_error("cannot start " + argv[0]);
  }
  CommandResult result;
  char buffer[4096];
  ssize_t count = 0;
  while ((count = read(pipeFds[0], buffer, sizeof buffer)) > 0) {
    result.output.append(buffer, static_cast<size_t>(count));
  }
  close(pipeFds[0]);
  int waitStatus = 0;
  waitpid(pid, &waitStatus, 0);
  result.exitCode = WIFEXITED(waitStatus) ? WEXITSTATUS(waitStatus) : 128 + WTERMSIG(waitStatus);
  return result;
}

std::string dojangCa() {
  const char* path = std::getenv("DOJANG_CA");
  if (path == nullptr) {
    throw std::runtime_error("DOJANG_CA is not set (run through meson test)");
  }
  return path;
}

CaServer::CaServer(const std::string& caDir, const std::vector<std::string>& extraArgs)
    : m_logPath(caDir + "/serve.log") {
  std::vector<std::string> argv = {dojangCa(), "serve", "--dir", caDir, "--port", "0", "--bind", "127.0.0.1"};
  argv.insert(argv.end(), extraArgs.begin(), extraArgs.end());
  int pipeFds[2];
  if (pipe2(pipeFds, O_CLOEXEC) != 0) {
    throw std::runtime_error("pipe failed");
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipeFds[1], 1);
  posix_spawn_file_actions_addopen(&actions, 2, m_logPath.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  std::vector<char*> pointers = argvPointers(argv);
  const int status = posix_spawn(&m_pid, pointers[0], &actions, nullptr, pointers.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(pipeFds[1]);
  m_stdout = pipeFds[0];
  if (status != 0) {
    throw std::runtime_error("cannot start dojang-ca serve");
  }
  // First stdout line: "dojang-ca listening on http://127.0.0.1:PORT/ ...".
  std::string line;
  while (line.find('\n') == std::string::npos) {
    pollfd waiting{m_stdout, POLLIN, 0};
    if (poll(&waiting, 1, 20000) <= 0) {
      stop();
      throw std::runtime_error("dojang-ca serve did not start: " + log());
    }
    char c = 0;
    if (read(m_stdout, &c, 1) != 1) {
      stop();
      throw std::runtime_error("dojang-ca serve exited: " + log());
    }
    line += c;
  }
  const std::string marker = "http://127.0.0.1:";
  const size_t at = line.find(marker);
  if (at == std::string::npos) {
    stop();
    throw std::runtime_error("unexpected first line: " + line);
  }
  m_port = std::stoi(line.substr(at + marker.size()));
}

CaServer::~CaServer() { stop(); }

bool CaServer::running() {
  if (m_pid <= 0) {
    return false;
  }
  int status = 0;
  return waitpid(m_pid, &status, WNOHANG) == 0;
}

int CaServer::stop() {
  int exitCode = -1;
  if (m_pid > 0) {
    kill(m_pid, SIGTERM);
    int status = 0;
    waitpid(m_pid, &status, 0);
    exitCode = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    m_pid = -1;
  }
  if (m_stdout >= 0) {
    close(m_stdout);
    m_stdout = -1;
  }
  return exitCode;
}

std::string CaServer::log() const { return readFile(m_logPath); }

StalledClient::StalledClient(int port) {
  // CLOEXEC: the openssl and curl children of other tests must not inherit (and hold) it.
  m_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (m_fd < 0) {
    throw std::runtime_error("socket failed");
  }
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(m_fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    close(m_fd);
    throw std::runtime_error("cannot connect to the CA");
  }
  const std::string start = "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n";
  if (send(m_fd, start.data(), start.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(start.size())) {
    close(m_fd);
    throw std::runtime_error("cannot send to the CA");
  }
}

StalledClient::~StalledClient() { close(m_fd); }

bool StalledClient::closedByServerWithin(int seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd waiting{m_fd, POLLIN, 0};
    if (left.count() <= 0 || poll(&waiting, 1, static_cast<int>(left.count())) <= 0) {
      return false;
    }
    char buffer[512];
    const ssize_t count = recv(m_fd, buffer, sizeof buffer, 0);
    if (count <= 0) {
      return true;  // EOF or reset: the server dropped us
    }
  }
}

std::string readFile(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  std::ostringstream contents;
  contents << file.rdbuf();
  return contents.str();
}

void writeFile(const std::string& path, const std::string& bytes) {
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  file << bytes;
}

void generateEcKey(const std::string& path) {
  CommandResult result =
      run({"openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path});
  if (result.exitCode != 0) {
    throw std::runtime_error("openssl genpkey failed: " + result.output);
  }
}

CertificateFacts inspectCertificate(const std::string& pemPath) {
  X509Ptr certificate = loadCertificate(pemPath);
  CertificateFacts facts;
  facts.serialHex = bignumHex(X509_get0_serialNumber(certificate.get()));
  {
    BioPtr out(BIO_new(BIO_s_mem()));
    X509_NAME_print_ex(out.get(), X509_get_subject_name(certificate.get()), 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
    char* data = nullptr;
    long length = BIO_get_mem_data(out.get(), &data);
    facts.subjectUtf8.assign(data, static_cast<size_t>(length));
  }
  const X509_NAME* subject = X509_get_subject_name(certificate.get());
  const int cnIndex = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
  if (cnIndex >= 0) {
    const ASN1_STRING* value = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, cnIndex));
    facts.cnIsUtf8String = ASN1_STRING_type(value) == V_ASN1_UTF8STRING;
  }
  CertificatePoliciesPtr policies(static_cast<CERTIFICATEPOLICIES*>(
      X509_get_ext_d2i(certificate.get(), NID_certificate_policies, nullptr, nullptr)));
  if (policies && sk_POLICYINFO_num(policies.get()) > 0) {
    char text[128];
    OBJ_obj2txt(text, sizeof text, sk_POLICYINFO_value(policies.get(), 0)->policyid, 1);
    facts.firstPolicyOid = text;
  }
  facts.notBefore = toEpoch(X509_get0_notBefore(certificate.get()));
  facts.notAfter = toEpoch(X509_get0_notAfter(certificate.get()));
  const uint32_t usage = X509_get_key_usage(certificate.get());
  facts.keyUsageDigitalSignature = (usage & KU_DIGITAL_SIGNATURE) != 0;
  facts.keyUsageNonRepudiation = (usage & KU_NON_REPUDIATION) != 0;
  CrlDistPointsPtr points(static_cast<CRL_DIST_POINTS*>(
      X509_get_ext_d2i(certificate.get(), NID_crl_distribution_points, nullptr, nullptr)));
  if (points && sk_DIST_POINT_num(points.get()) > 0) {
    const DIST_POINT* point = sk_DIST_POINT_value(points.get(), 0);
    if (point->distpoint != nullptr && point->distpoint->type == 0) {
      const GENERAL_NAME* name = sk_GENERAL_NAME_value(point->distpoint->name.fullname, 0);
      if (name != nullptr && name->type == GEN_URI) {
        facts.crlUrl.assign(reinterpret_cast<const char*>(ASN1_STRING_get0_data(name->d.uniformResourceIdentifier)),
                            static_cast<size_t>(ASN1_STRING_length(name->d.uniformResourceIdentifier)));
      }
    }
  }
  facts.hasSubjectKeyId = X509_get0_subject_key_id(certificate.get()) != nullptr;
  facts.hasAuthorityKeyId = X509_get0_authority_key_id(certificate.get()) != nullptr;
  return facts;
}

bool certificateMatchesKey(const std::string& certPemPath, const std::string& keyPemPath) {
  X509Ptr certificate = loadCertificate(certPemPath);
  BioPtr bio(BIO_new_file(keyPemPath.c_str(), "r"));
  PkeyPtr key(bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  return key && X509_check_private_key(certificate.get(), key.get()) == 1;
}

std::vector<std::string> crlSerials(const std::string& crlPath) {
  const std::string bytes = readFile(crlPath);
  BioPtr bio(BIO_new_mem_buf(bytes.data(), static_cast<int>(bytes.size())));
  X509CrlPtr crl(bytes.rfind("-----BEGIN", 0) == 0 ? PEM_read_bio_X509_CRL(bio.get(), nullptr, nullptr, nullptr)
                                                  : d2i_X509_CRL_bio(bio.get(), nullptr));
  if (!crl) {
    throw std::runtime_error("not a CRL: " + crlPath);
  }
  std::vector<std::string> serials;
  STACK_OF(X509_REVOKED)* revoked = X509_CRL_get_REVOKED(crl.get());
  for (int i = 0; i < sk_X509_REVOKED_num(revoked); ++i) {
    serials.push_back(bignumHex(X509_REVOKED_get0_serialNumber(sk_X509_REVOKED_value(revoked, i))));
  }
  return serials;
}

}  // namespace dojang::ca::test
