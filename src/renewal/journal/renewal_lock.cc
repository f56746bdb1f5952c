#include "src/renewal/journal/renewal_lock.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/file.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <set>
#include <utility>

#include "src/common/errors/error.h"
#include "src/common/errors/foreign_errors.h"
#include "src/renewal/journal/private_directory.h"

namespace dojang::renewal {
namespace {

// Lock files held by RenewalLocks of this process. flock would refuse a second descriptor of the
// same process too; this set is what lets the journal tell "ours" from "another process's".
struct HeldByThisProcess final {
  std::mutex mutex;
  std::set<std::string> lockFiles;
};

HeldByThisProcess& heldByThisProcess() {
  static HeldByThisProcess held;
  return held;
}

std::string sha256Hex(const std::string& text) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int length = 0;
  checkOpensslStatus(EVP_Digest(text.data(), text.size(), digest.data(), &length, EVP_sha256(), nullptr),
                     "SHA-256 of the certificate key");
  static constexpr char kHexDigits[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(length * 2);
  for (unsigned int index = 0; index < length; ++index) {
    hex.push_back(kHexDigits[digest[index] >> 4]);
    hex.push_back(kHexDigits[digest[index] & 0x0f]);
  }
  return hex;
}

[[noreturn]] void throwSystem(const std::string& what) {
  throw Error(CKR_FUNCTION_FAILED, ErrorKind::Fatal, what + ": " + std::strerror(errno));
}

// `lockFile` opened with its exclusive lock taken, or -1 when someone else holds the lock.
int openLocked(const std::filesystem::path& lockFile, int extraOpenFlags) {
  const int descriptor = open(lockFile.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW | extraOpenFlags, 0600);
  if (descriptor < 0) {
    throwSystem("cannot open " + lockFile.string());
  }
  while (flock(descriptor, LOCK_EX | LOCK_NB) != 0) {
    if (errno != EINTR) {
      const int failure = errno;
      close(descriptor);
      if (failure == EWOULDBLOCK) {
        return -1;
      }
      errno = failure;
      throwSystem("flock " + lockFile.string());
    }
  }
  return descriptor;
}

}  // namespace

std::filesystem::path RenewalLock::lockFilePath(const std::filesystem::path& journalPath,
                                                const std::string& certificateKey) {
  // Hashed, because certificate keys hold '/' and whatever a token serial contains.
  return journalPath.parent_path() / "locks" / (sha256Hex(certificateKey) + ".lock");
}

std::optional<RenewalLock> RenewalLock::tryAcquire(const std::filesystem::path& journalPath,
                                                   const std::string& certificateKey) {
  std::filesystem::path lockFile = lockFilePath(journalPath, certificateKey);
  HeldByThisProcess& held = heldByThisProcess();
  const std::lock_guard guard(held.mutex);
  if (held.lockFiles.contains(lockFile.string())) {
    return std::nullopt;
  }
  createPrivateDirectories(lockFile.parent_path());
  const int descriptor = openLocked(lockFile, O_CREAT);
  if (descriptor < 0) {
    return std::nullopt;
  }
  held.lockFiles.insert(lockFile.string());
  return RenewalLock(descriptor, std::move(lockFile), certificateKey);
}

bool RenewalLock::isHeld(const std::filesystem::path& journalPath, const std::string& certificateKey) {
  if (isHeldByThisProcess(journalPath, certificateKey)) {
    return true;
  }
  const std::filesystem::path lockFile = lockFilePath(journalPath, certificateKey);
  std::error_code ignored;
  if (!std::filesystem::exists(lockFile, ignored)) {
    return false;  // nobody ever locked it (lock files are never deleted)
  }
  const int descriptor = openLocked(lockFile, 0);
  if (descriptor < 0) {
    return true;
  }
  close(descriptor);  // releases the probe's lock
  return false;
}

bool RenewalLock::isHeldByThisProcess(const std::filesystem::path& journalPath,
                                      const std::string& certificateKey) {
  const std::string lockFile = lockFilePath(journalPath, certificateKey).string();
  HeldByThisProcess& held = heldByThisProcess();
  const std::lock_guard guard(held.mutex);
  return held.lockFiles.contains(lockFile);
}

RenewalLock::RenewalLock(int descriptor, std::filesystem::path lockFile, std::string certificateKey)
    : m_descriptor(descriptor),
      m_lockFile(std::move(lockFile)),
      m_certificateKey(std::move(certificateKey)) {}

RenewalLock::~RenewalLock() {
  release();
}

RenewalLock::RenewalLock(RenewalLock&& other) noexcept
    : m_descriptor(std::exchange(other.m_descriptor, -1)),
      m_lockFile(std::move(other.m_lockFile)),
      m_certificateKey(std::move(other.m_certificateKey)) {}

RenewalLock& RenewalLock::operator=(RenewalLock&& other) noexcept {
  if (this != &other) {
    release();
    m_descriptor = std::exchange(other.m_descriptor, -1);
    m_lockFile = std::move(other.m_lockFile);
    m_certificateKey = std::move(other.m_certificateKey);
  }
  return *this;
}

void RenewalLock::release() noexcept {
  if (m_descriptor < 0) {
    return;
  }
  HeldByThisProcess& held = heldByThisProcess();
  const std::lock_guard guard(held.mutex);
  // close() without LOCK_UN: the lock belongs to the open file, which a child forked without exec
  // shares; unlocking from either would free the other's lock while it still renews.
  close(m_descriptor);
  m_descriptor = -1;
  held.lockFiles.erase(m_lockFile.string());
}

}  // namespace dojang::renewal
