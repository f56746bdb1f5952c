// One renewal per certificate at a time, across processes (the CLI, dojangd's `renew --auto`
// child): an exclusive flock on <journal dir>/locks/<SHA-256 hex of the certificate key>.lock.
// The kernel drops the lock when its holder dies, so a SIGKILLed renewal never leaves it stale;
// the unfinished row it leaves in the journal is for recovery (journal.h).
//
// The lock files are never deleted: unlinking a file others may be about to flock would let two
// holders lock two different files of the same name.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

namespace dojang::renewal {

class RenewalLock final {
 public:
  // The lock for that certificate, or nullopt when another holder (in this process or another) has
  // it. Creates the locks/ directory (mode 0700) when missing. The descriptor is close-on-exec,
  // so programs started by the holder do not keep the lock alive.
  [[nodiscard]] static std::optional<RenewalLock> tryAcquire(const std::filesystem::path& journalPath,
                                                             const std::string& certificateKey);
  // Whether anyone holds it. Probing takes the lock for an instant, so a tryAcquire racing with a
  // probe may fail once; callers of tryAcquire treat failure as "busy, try later" anyway.
  [[nodiscard]] static bool isHeld(const std::filesystem::path& journalPath,
                                   const std::string& certificateKey);
  // Whether a RenewalLock of this process holds it (known without touching the file).
  [[nodiscard]] static bool isHeldByThisProcess(const std::filesystem::path& journalPath,
                                                const std::string& certificateKey);
  [[nodiscard]] static std::filesystem::path lockFilePath(const std::filesystem::path& journalPath,
                                                          const std::string& certificateKey);

  ~RenewalLock();
  RenewalLock(RenewalLock&& other) noexcept;
  RenewalLock& operator=(RenewalLock&& other) noexcept;
  RenewalLock(const RenewalLock&) = delete;
  RenewalLock& operator=(const RenewalLock&) = delete;

  [[nodiscard]] const std::string& certificateKey() const noexcept { return m_certificateKey; }
  [[nodiscard]] const std::filesystem::path& lockFile() const noexcept { return m_lockFile; }

 private:
  RenewalLock(int descriptor, std::filesystem::path lockFile, std::string certificateKey);
  void release() noexcept;

  int m_descriptor = -1;
  std::filesystem::path m_lockFile;
  std::string m_certificateKey;
};

}  // namespace dojang::renewal
