// The NSS databases browsers read their PKCS#11 modules from, and what NSS's modutil says and
// does with them: every Firefox profile (profiles.ini in the classic, snap and flatpak places)
// and Chromium's shared $HOME/.pki/nssdb.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace dojang::cli {

struct BrowserDatabase {
  std::string browser;  // "firefox" or "chromium"
  std::string profile;  // profiles.ini's Name= (Firefox only)
  std::filesystem::path directory;
  bool exists = false;  // the directory holds cert9.db (an sql: database)
};

// Firefox's profiles under `home` (each profiles.ini's [ProfileN] sections, relative or
// absolute), then Chromium's database. `notes` gets what was looked for and not found.
[[nodiscard]] std::vector<BrowserDatabase> findBrowserDatabases(const std::filesystem::path& home,
                                                                std::vector<std::string>& notes);

// The pid of the Firefox that has `profile` open, if one does: the holder of the fcntl lock on
// .parentlock, or the live pid of the `lock` symlink ("host:+PID"), which Firefox itself treats
// as in use. Both are checked: a Firefox in a flatpak sandbox has pids of its own namespace in
// the symlink, and an older or crashed one may leave only one of the two.
[[nodiscard]] std::optional<pid_t> firefoxHoldingProfile(const std::filesystem::path& profile);

struct NssModule {
  std::string name;
  std::string library;  // empty for NSS's internal module
};

// The modules of the sql: database in `directory`, from `modutil -rawlist`, which reads the
// database without loading any module. Throws CommandError when modutil fails.
[[nodiscard]] std::vector<NssModule> listNssModules(const std::filesystem::path& directory);

// A new, empty sql: database in `directory` (created with mode 0700 when missing), with
// `certutil -N --empty-password`, as browsers create it on their first start.
void createNssDatabase(const std::filesystem::path& directory);

// `modutil -add NAME -libfile LIBRARY` and `modutil -delete NAME`, with -force (no questions).
// Throw CommandError with modutil's own words when it fails.
void addNssModule(const std::filesystem::path& directory, const std::string& name,
                  const std::string& library);
void deleteNssModule(const std::filesystem::path& directory, const std::string& name);

}  // namespace dojang::cli
