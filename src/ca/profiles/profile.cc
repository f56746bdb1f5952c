#include "src/ca/profiles/profile.h"

#include <toml++/toml.h>

#include <fstream>
#include <set>
#include <sstream>

#include "src/common/errors/error.h"

namespace dojang::ca {
namespace {

[[noreturn]] void badProfiles(const std::string& message) {
  throw Error(CKR_ARGUMENTS_BAD, ErrorKind::BadInput, message);
}

std::string requireString(const toml::table& table, const std::string& key, const std::string& where) {
  const auto value = table[key].value<std::string>();
  if (!value || value->empty()) {
    badProfiles(where + ": missing or empty string '" + key + "'");
  }
  return *value;
}

long long optionalInteger(const toml::table& table, const std::string& key, long long fallback,
                          long long minimum, long long maximum, const std::string& where) {
  if (!table.contains(key)) {
    return fallback;
  }
  const auto value = table[key].value<long long>();
  if (!value || *value < minimum || *value > maximum) {
    badProfiles(where + ": '" + key + "' must be an integer from " + std::to_string(minimum) +
                " to " + std::to_string(maximum));
  }
  return *value;
}

bool isDottedOid(const std::string& text) {
  // Digits and single dots, at least two arcs; OpenSSL parses it later.
  if (text.empty() || text.front() == '.' || text.back() == '.') {
    return false;
  }
  bool previousDot = false;
  int dots = 0;
  for (char c : text) {
    if (c == '.') {
      if (previousDot) {
        return false;
      }
      previousDot = true;
      ++dots;
    } else if (c >= '0' && c <= '9') {
      previousDot = false;
    } else {
      return false;
    }
  }
  return dots >= 1;
}

}  // namespace

const Profile* ProfileCatalog::find(const std::string& id) const {
  for (const Profile& profile : profiles) {
    if (profile.id == id) {
      return &profile;
    }
  }
  return nullptr;
}

const Profile& ProfileCatalog::require(const std::string& id) const {
  if (const Profile* profile = find(id)) {
    return *profile;
  }
  std::string known;
  for (const Profile& profile : profiles) {
    known += (known.empty() ? "" : ", ") + profile.id;
  }
  throw Error(CKR_ARGUMENTS_BAD, ErrorKind::BadInput,
              "unknown profile '" + id + "'; known profiles: " + known);
}

ProfileCatalog parseProfiles(const std::string& tomlText, const std::string& sourceName) {
  toml::table root;
  try {
    root = toml::parse(tomlText, sourceName);
  } catch (const toml::parse_error& error) {
    std::ostringstream message;
    message << sourceName << ": " << error.description() << " (line " << error.source().begin.line
            << ")";
    badProfiles(message.str());
  }

  ProfileCatalog catalog;
  if (const toml::table* defaults = root["defaults"].as_table()) {
    const std::string where = sourceName + " [defaults]";
    catalog.renewalWindowDays =
        static_cast<int>(optionalInteger(*defaults, "renewal_window_days", 30, 0, 3650, where));
    catalog.codeLifetimeDays =
        static_cast<int>(optionalInteger(*defaults, "code_lifetime_days", 7, 1, 3650, where));
  }

  // Support contacts are shared by all profiles of one operator: [support.koscom].
  const toml::table* supportTable = root["support"].as_table();

  const toml::array* list = root["profile"].as_array();
  if (list == nullptr || list->empty()) {
    badProfiles(sourceName + ": no [[profile]] entries");
  }
  std::set<std::string> seen;
  int index = 0;
  for (const toml::node& node : *list) {
    ++index;
    const toml::table* table = node.as_table();
    const std::string where = sourceName + " profile #" + std::to_string(index);
    if (table == nullptr) {
      badProfiles(where + ": not a table");
    }
    Profile profile;
    profile.id = requireString(*table, "id", where);
    const std::string named = sourceName + " profile '" + profile.id + "'";
    if (!seen.insert(profile.id).second) {
      badProfiles(named + ": duplicate id");
    }
    profile.brand = requireString(*table, "brand", named);
    profile.operatorName = table->contains("operator") ? requireString(*table, "operator", named)
                                                       : profile.brand;
    profile.type = requireString(*table, "type", named);
    profile.policyOid = requireString(*table, "policy_oid", named);
    if (!isDottedOid(profile.policyOid)) {
      badProfiles(named + ": policy_oid '" + profile.policyOid + "' is not a dotted OID");
    }
    profile.validityDays = static_cast<int>(optionalInteger(*table, "validity_days", 365, 1, 3650, named));
    profile.feeKrw = optionalInteger(*table, "fee_krw", 0, 0, 100'000'000, named);
    if (table->contains("support")) {
      const std::string key = requireString(*table, "support", named);
      const toml::table* contact = supportTable != nullptr ? (*supportTable)[key].as_table() : nullptr;
      if (contact == nullptr) {
        badProfiles(named + ": support '" + key + "' has no [support." + key + "] table");
      }
      SupportContact support;
      support.phone = (*contact)["phone"].value_or(std::string());
      support.hours = (*contact)["hours"].value_or(std::string());
      support.walkIn = (*contact)["walk_in"].value_or(std::string());
      profile.support = support;
    }
    catalog.profiles.push_back(std::move(profile));
  }
  return catalog;
}

ProfileCatalog loadProfiles(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    badProfiles("cannot read profiles file " + path);
  }
  std::ostringstream text;
  text << file.rdbuf();
  return parseProfiles(text.str(), path);
}

std::string formatKrw(long long amount) {
  std::string digits = std::to_string(amount < 0 ? -amount : amount);
  std::string grouped;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i != 0 && (digits.size() - i) % 3 == 0) {
      grouped += ',';
    }
    grouped += digits[i];
  }
  return (amount < 0 ? "-" : "") + grouped + " KRW";
}

std::string formatFee(long long feeKrw) { return feeKrw == 0 ? std::string("free") : formatKrw(feeKrw); }

}  // namespace dojang::ca
