#include "src/cli/nss_databases.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <system_error>

#include "src/cli/commands.h"
#include "src/cli/run_program.h"

namespace dojang::cli {

namespace fs = std::filesystem;

namespace {

// Where Firefox keeps profiles.ini: Debian's firefox(-esr), the snap, the flatpak.
std::vector<fs::path> firefoxRoots(const fs::path& home) {
  return {home / ".mozilla" / "firefox", home / "snap" / "firefox" / "common" / ".mozilla" / "firefox",
          home / ".var" / "app" / "org.mozilla.firefox" / ".mozilla" / "firefox"};
}

std::string trimmed(const std::string& text) {
  const auto first = text.find_first_not_of(" \t\r");
  if (first == std::string::npos) {
    return {};
  }
  return text.substr(first, text.find_last_not_of(" \t\r") - first + 1);
}

// profiles.ini's sections by name, each its key=value lines.
std::map<std::string, std::map<std::string, std::string>> readIni(const fs::path& file) {
  std::map<std::string, std::map<std::string, std::string>> sections;
  std::ifstream in(file);
  std::string line;
  std::string section;
  while (std::getline(in, line)) {
    line = trimmed(line);
    if (line.empty() || line[0] == ';' || line[0] == '#') {
      continue;
    }
    if (line.front() == '[' && line.back() == ']') {
      section = line.substr(1, line.size() - 2);
      sections[section];
    } else if (const auto equals = line.find('='); equals != std::string::npos && !section.empty()) {
      sections[section][trimmed(line.substr(0, equals))] = trimmed(line.substr(equals + 1));
    }
  }
  return sections;
}

bool isDatabase(const fs::path& directory) {
  std::error_code error;
  return fs::is_regular_file(directory / "cert9.db", error);
}

bool processAlive(pid_t pid) {
  return pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM);
}

// The pid in a `lock` symlink's target, "host:+PID"; nullopt for anything else.
std::optional<pid_t> lockSymlinkPid(const fs::path& lock) {
  std::error_code error;
  const std::string target = fs::read_symlink(lock, error).string();
  const auto marker = target.rfind(":+");
  if (error || marker == std::string::npos) {
    return std::nullopt;
  }
  try {
    std::size_t used = 0;
    const long pid = std::stol(target.substr(marker + 2), &used);
    if (used == target.size() - marker - 2 && pid > 0) {
      return static_cast<pid_t>(pid);
    }
  } catch (const std::exception&) {
  }
  return std::nullopt;
}

// NSS module specs are `key=value` pairs; a value may be quoted with "", '', {}, [] or (), and a
// backslash escapes the next character.
std::map<std::string, std::string> parseModuleSpec(const std::string& spec) {
  std::map<std::string, std::string> pairs;
  std::size_t at = 0;
  const auto closing = [](char open) {
    switch (open) {
      case '"':
        return '"';
      case '\'':
        return '\'';
      case '{':
        return '}';
      case '[':
        return ']';
      case '(':
        return ')';
      default:
        return '\0';
    }
  };
  while (at < spec.size()) {
    while (at < spec.size() && spec[at] == ' ') {
      ++at;
    }
    const auto equals = spec.find('=', at);
    if (equals == std::string::npos) {
      break;
    }
    const std::string key = spec.substr(at, equals - at);
    at = equals + 1;
    std::string value;
    if (const char close = at < spec.size() ? closing(spec[at]) : '\0'; close != '\0') {
      ++at;
      while (at < spec.size() && spec[at] != close) {
        if (spec[at] == '\\' && at + 1 < spec.size()) {
          ++at;
        }
        value += spec[at++];
      }
      ++at;
    } else {
      while (at < spec.size() && spec[at] != ' ') {
        value += spec[at++];
      }
    }
    pairs[key] = value;
  }
  return pairs;
}

// modutil's complaint, its ERROR lines, with a word on the one failure people meet here.
std::string modutilFailure(const std::string& what, const ProgramOutput& run) {
  std::istringstream lines(run.output);
  std::string line;
  std::string errors;
  while (std::getline(lines, line)) {
    if (line.find("ERROR") != std::string::npos || line.find("did not finish") != std::string::npos) {
      errors += (errors.empty() ? "" : " ") + trimmed(line);
    }
  }
  if (errors.empty()) {
    errors =
        trimmed(run.output).empty() ? "exit status " + std::to_string(run.exitCode) : trimmed(run.output);
  }
  std::string message = what + ": " + errors;
  if (run.output.find("CKR_DEVICE_ERROR") != std::string::npos) {
    message +=
        " (modutil loads the module to add it, and dojang's module asks dojangd for its slots: "
        "is dojangd running? `dojang status` tells)";
  }
  return message;
}

}  // namespace

std::vector<BrowserDatabase> findBrowserDatabases(const fs::path& home, std::vector<std::string>& notes) {
  std::vector<BrowserDatabase> databases;
  std::set<fs::path> seen;
  bool anyIni = false;
  for (const auto& root : firefoxRoots(home)) {
    const fs::path ini = root / "profiles.ini";
    std::error_code error;
    if (!fs::is_regular_file(ini, error)) {
      continue;
    }
    anyIni = true;
    for (const auto& [section, keys] : readIni(ini)) {
      const auto path = keys.find("Path");
      if (section.rfind("Profile", 0) != 0 || path == keys.end() || path->second.empty()) {
        continue;
      }
      const auto relative = keys.find("IsRelative");
      const bool isRelative = relative == keys.end() || relative->second != "0";
      const fs::path directory =
          (isRelative ? root / path->second : fs::path(path->second)).lexically_normal();
      const fs::path canonical = fs::weakly_canonical(directory, error);
      if (!seen.insert(error ? directory : canonical).second) {
        continue;
      }
      if (!fs::is_directory(directory, error)) {
        notes.push_back("the Firefox profile " + directory.string() + " named in " + ini.string() +
                        " does not exist: skipped");
        continue;
      }
      const auto name = keys.find("Name");
      databases.push_back(
          {"firefox", name == keys.end() ? path->second : name->second, directory, isDatabase(directory)});
    }
  }
  if (!anyIni) {
    notes.push_back("no Firefox profiles: no profiles.ini in " + firefoxRoots(home).front().string() +
                    " (nor in the snap's or the flatpak's place)");
  }
  const fs::path chromium = home / ".pki" / "nssdb";
  databases.push_back({"chromium", "", chromium, isDatabase(chromium)});
  return databases;
}

std::optional<pid_t> firefoxHoldingProfile(const fs::path& profile) {
  const int fd = ::open((profile / ".parentlock").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    struct flock query {};
    query.l_type = F_WRLCK;
    query.l_whence = SEEK_SET;
    const bool asked = ::fcntl(fd, F_GETLK, &query) == 0;
    ::close(fd);
    if (asked && query.l_type != F_UNLCK) {
      // l_pid is 0 when the holder's pid namespace is not ours (a sandbox): the symlink may say more.
      if (query.l_pid > 0) {
        return query.l_pid;
      }
      const auto linked = lockSymlinkPid(profile / "lock");
      return linked ? *linked : pid_t{0};
    }
  }
  if (const auto linked = lockSymlinkPid(profile / "lock"); linked && processAlive(*linked)) {
    return linked;
  }
  return std::nullopt;
}

std::vector<NssModule> listNssModules(const fs::path& directory) {
  const auto run = runProgram({"modutil", "-dbdir", "sql:" + directory.string(), "-rawlist"});
  if (run.exitCode != 0) {
    throw CommandError(kExitFailure, modutilFailure("modutil cannot read sql:" + directory.string(), run));
  }
  std::vector<NssModule> modules;
  std::istringstream lines(run.output);
  std::string line;
  while (std::getline(lines, line)) {
    if (trimmed(line).empty()) {
      continue;
    }
    auto pairs = parseModuleSpec(trimmed(line));
    if (pairs.count("name") != 0) {
      modules.push_back({pairs["name"], pairs["library"]});
    }
  }
  return modules;
}

void createNssDatabase(const fs::path& directory) {
  std::error_code error;
  if (fs::create_directories(directory, error)) {
    fs::permissions(directory, fs::perms::owner_all, error);
  }
  if (error) {
    throw CommandError(kExitFailure, "cannot create " + directory.string() + ": " + error.message());
  }
  const auto run = runProgram({"certutil", "-N", "--empty-password", "-d", "sql:" + directory.string()});
  if (run.exitCode != 0) {
    throw CommandError(kExitFailure, modutilFailure("certutil cannot create sql:" + directory.string(), run));
  }
}

void addNssModule(const fs::path& directory, const std::string& name, const std::string& library) {
  const auto run = runProgram(
      {"modutil", "-dbdir", "sql:" + directory.string(), "-add", name, "-libfile", library, "-force"});
  if (run.exitCode != 0) {
    throw CommandError(kExitFailure, modutilFailure("modutil could not add " + library, run));
  }
}

void deleteNssModule(const fs::path& directory, const std::string& name) {
  const auto run = runProgram({"modutil", "-dbdir", "sql:" + directory.string(), "-delete", name, "-force"});
  if (run.exitCode != 0) {
    throw CommandError(kExitFailure, modutilFailure("modutil could not delete " + name, run));
  }
}

}  // namespace dojang::cli
