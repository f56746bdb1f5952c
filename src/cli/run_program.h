// Runs a helper program (modutil, certutil) from an argument vector, never through a shell, and
// collects what it printed so that its complaints can be shown to the person.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace dojang::cli {

struct ProgramOutput {
  int exitCode = -1;   // the program's exit status; -1 when it died of a signal or was stopped
  std::string output;  // standard output and standard error together, as printed
};

// Searches $PATH for argv[0]. Standard input is /dev/null. A program still running after
// `deadline` is killed (exitCode -1). Throws CommandError when the program cannot be started.
[[nodiscard]] ProgramOutput runProgram(const std::vector<std::string>& argv,
                                       std::chrono::seconds deadline = std::chrono::seconds(120));

}  // namespace dojang::cli
