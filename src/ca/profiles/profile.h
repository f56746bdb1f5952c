// Certificate profiles: which CA brand, certificate type, policy OID, validity and fee a reference
// code or a renewal is issued under. They come from a TOML file the operator can edit
// (ca/profiles.toml, installed to <datadir>/dojang/profiles.toml).
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace dojang::ca {

struct SupportContact final {
  std::string phone;   // e.g. 1577-7337
  std::string hours;   // telephone hours
  std::string walkIn;  // walk-in hours
};

struct Profile final {
  std::string id;           // what operators type: --profile signkorea-general-personal
  std::string brand;        // CA brand in the subject's O: SignKorea, yessign, KICA, ...
  std::string operatorName; // company behind the brand: Koscom, KFTC, ...
  std::string type;         // 범용 개인, 증권·보험용, ...
  std::string policyOid;    // first certificatePolicies entry
  int validityDays = 365;
  long long feeKrw = 0;     // per issuance or renewal; 0 = free
  std::optional<SupportContact> support;

  [[nodiscard]] bool isPaid() const noexcept { return feeKrw > 0; }
};

struct ProfileCatalog final {
  int renewalWindowDays = 30;  // renewal accepted from this many days before expiry
  int codeLifetimeDays = 7;    // reference code expiry
  std::vector<Profile> profiles;

  // Null when no profile has that id.
  [[nodiscard]] const Profile* find(const std::string& id) const;
  // Throws dojang::Error(BadInput) naming the known ids.
  [[nodiscard]] const Profile& require(const std::string& id) const;
};

// Parses the TOML file; throws dojang::Error(BadInput) with file, profile and key on mistakes.
[[nodiscard]] ProfileCatalog loadProfiles(const std::string& path);
[[nodiscard]] ProfileCatalog parseProfiles(const std::string& tomlText, const std::string& sourceName);

// "4,400 KRW", "free"
[[nodiscard]] std::string formatFee(long long feeKrw);
[[nodiscard]] std::string formatKrw(long long amount);

}  // namespace dojang::ca
