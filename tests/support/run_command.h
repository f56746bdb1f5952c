// Runs a program without a shell and collects what it wrote: fork/exec with pipes.
#pragma once

#include <chrono>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace dojang::test {

struct CommandResult {
  int exitCode = -1;  // the exit status, or 128 + signal number when killed (as a shell reports)
  std::string out;    // everything written to stdout
  std::string err;    // everything written to stderr
  bool timedOut = false;
};

struct CommandOptions {
  std::map<std::string, std::string> env;  // added to (or replacing in) this process's environment
  std::string input;                       // written to the program's stdin, which is then closed
  std::filesystem::path workingDirectory;  // empty: this process's
  std::chrono::milliseconds timeout{120000};  // then SIGKILL; the result says timedOut
};

// argv[0] is looked up in PATH. A program that cannot be started exits 127 with a message on err.
// Throws std::runtime_error only when the pipes or the fork fail.
CommandResult runCommand(const std::vector<std::string>& argv, const CommandOptions& options);
CommandResult runCommand(const std::vector<std::string>& argv,
                         const std::map<std::string, std::string>& env = {});

}  // namespace dojang::test
