// `dojang status`: what dojangd is doing, asked over the wire protocol directly, and what its
// renewal scheduler says about each certificate, read from the journal's database.
#include <optional>
#include <string>
#include <vector>

#include "src/cli/commands.h"
#include "src/cli/daemon_client.h"
#include "src/cli/table.h"
#include "src/common/errors/error.h"
#include "src/common/wire/socket_path.h"
#include "src/pki/certificate_summary.h"
#include "src/renewal/journal/journal.h"
#include "src/renewal/journal/scheduler_state.h"

namespace dojang::cli {

namespace {

std::string uptimeText(std::uint64_t seconds) {
  const std::uint64_t days = seconds / 86400;
  const std::uint64_t hours = seconds % 86400 / 3600;
  const std::uint64_t minutes = seconds % 3600 / 60;
  auto two = [](std::uint64_t value) { return (value < 10 ? "0" : "") + std::to_string(value); };
  if (days > 0) {
    return std::to_string(days) + "d " + two(hours) + "h " + two(minutes) + "m";
  }
  if (hours > 0) {
    return std::to_string(hours) + "h " + two(minutes) + "m";
  }
  if (minutes > 0) {
    return std::to_string(minutes) + "m " + two(seconds % 60) + "s";
  }
  return std::to_string(seconds) + "s";
}

// The scheduler's rows. They come from its table beside the renewal journal, not over the wire:
// adding them to DaemonStatusReply would change the protocol for every module and daemon
// (src/renewal/journal/scheduler_state.h says more). Nothing when there is no such file yet.
std::optional<std::vector<renewal::SchedulerStateRow>> schedulerRows(std::string& problem) {
  try {
    return renewal::SchedulerState::readIfPresent(renewal::Journal::defaultPath());
  } catch (const std::exception& error) {
    problem = error.what();
    return std::nullopt;
  }
}

}  // namespace

CommandResult runStatus(const StatusOptions& options) {
  const std::string socket = options.socket.value_or(wire::defaultSocketPath());
  DaemonStatus daemon;
  try {
    daemon = queryDaemonStatus(socket);
  } catch (const DaemonUnreachable& error) {
    throw CommandError(kExitDaemonUnreachable, error.what(),
                       {{"socket", error.socketPath()}, {"running", false}});
  } catch (const std::exception& error) {
    throw CommandError(kExitFailure, error.what(), {{"socket", socket}});
  }
  const auto& status = daemon.status;

  nlohmann::json backends = nlohmann::json::array();
  Table backendTable({"BACKEND", "PATH", "STATE"});
  for (const auto& backend : status.backends) {
    backends.push_back({{"name", backend.name}, {"path", backend.path}, {"state", backend.state}});
    backendTable.addRow({backend.name, backend.path, backend.state});
  }
  nlohmann::json slots = nlohmann::json::array();
  Table slotTable({"SLOT", "BACKEND", "TOKEN", "LABEL", "CLIENTS LOGGED IN", "CACHED OBJECTS"});
  std::string slotNotes;
  for (const auto& slot : status.slots) {
    slots.push_back({{"slot", slot.slot},
                     {"backend", slot.backend},
                     {"tokenPresent", slot.tokenPresent},
                     {"state", slot.state},
                     {"problem", slot.problem.empty() ? nlohmann::json(nullptr) : nlohmann::json(slot.problem)},
                     {"tokenLabel", slot.tokenLabel},
                     {"loggedInClients", slot.loggedInClients},
                     {"cachedObjects", slot.cachedObjects}});
    slotTable.addRow({std::to_string(slot.slot), slot.backend, slot.state,
                      slot.tokenPresent ? slot.tokenLabel : "-",
                      slot.tokenPresent ? std::to_string(slot.loggedInClients) : "-",
                      slot.tokenPresent ? std::to_string(slot.cachedObjects) : "-"});
    if (!slot.problem.empty()) {
      slotNotes += "slot " + std::to_string(slot.slot) + ": " + slot.problem + "\n";
    }
  }

  CommandResult result;
  result.json = {{"running", true},
                 {"socket", socket},
                 {"version", status.version},
                 {"pid", status.pid},
                 {"uptimeSeconds", status.uptimeSeconds},
                 {"clients", status.clients},
                 {"connections", status.connections},
                 {"sessions", status.sessions},
                 {"protocolVersion", daemon.hello.protocolVersion},
                 {"backends", backends},
                 {"slots", slots}};

  Table summary({"dojangd", status.version});
  summary.addRow({"pid", std::to_string(status.pid)});
  summary.addRow({"uptime", uptimeText(status.uptimeSeconds)});
  summary.addRow({"socket", socket});
  summary.addRow({"clients", std::to_string(status.clients)});
  summary.addRow({"connections", std::to_string(status.connections)});
  summary.addRow({"sessions", std::to_string(status.sessions)});
  result.text = summary.render() + "\n";
  result.text += backendTable.empty() ? "No backends loaded.\n" : backendTable.render();
  result.text += "\n";
  result.text += slotTable.empty() ? "No slots.\n" : slotTable.render() + slotNotes;

  std::string problem;
  const auto rows = schedulerRows(problem);
  nlohmann::json renewals = nlohmann::json::array();
  Table renewalTable({"CERTIFICATE", "TOKEN", "DAYS LEFT", "RENEWAL", "DETAIL"});
  for (const auto& row : rows.value_or(std::vector<renewal::SchedulerStateRow>{})) {
    const auto time = [](std::int64_t seconds) {
      return pki::formatIso8601Utc(std::chrono::system_clock::time_point(std::chrono::seconds(seconds)));
    };
    renewals.push_back(
        {{"certificateKey", row.certificateKey},
         {"label", row.label},
         {"token", row.tokenLabel},
         {"daysLeft", row.daysLeft},
         {"notAfter", time(row.notAfter)},
         {"state", row.state},
         {"detail", row.detail},
         {"retryAt", row.retryAt ? nlohmann::json(time(*row.retryAt)) : nlohmann::json(nullptr)},
         {"updated", time(row.updatedAt)}});
    renewalTable.addRow({row.label, row.tokenLabel, std::to_string(row.daysLeft), row.state, row.detail});
  }
  result.json["renewals"] = renewals;
  result.text += "\n";
  if (!problem.empty()) {
    result.json["renewalsProblem"] = problem;
    result.text += "Renewal scheduler state unreadable: " + problem + "\n";
  } else {
    result.text += renewalTable.empty() ? "No certificates checked by the renewal scheduler yet.\n"
                                        : renewalTable.render();
  }
  return result;
}

}  // namespace dojang::cli
