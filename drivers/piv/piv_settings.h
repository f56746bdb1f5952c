// What dojangd.toml says about the PIV driver (parsed in src/daemon/config.cc):
//
//   [piv]
//   enabled = true
//   readers = ["Yubico*", "*PIV*"]     # glob patterns on reader names; default: every reader
//   overlay_file = "/path/piv-overlay.db"   # default: $XDG_STATE_HOME/dojang/piv-overlay.db
//   [[piv.card]]                       # one per card whose management key is not the default
//   serial = "12345678"                # YubiKey serial or CHUID serial (as `dojang tokens` shows)
//   reader = "Yubico YubiKey OTP+FIDO+CCID 00 00"   # or the reader it sits in
//   management_key_file = "/home/me/.config/dojang/yubikey.key"   # hex, mode 0600
//   management_key_algorithm = "aes192"   # 3des, aes128, aes192, aes256; default by key length
#pragma once

#include <string>
#include <vector>

namespace dojang::piv {

struct PivCardSettings {
  std::string serial;
  std::string reader;
  std::string managementKeyFile;
  std::string managementKeyAlgorithm;  // empty: by the key's length
  bool operator==(const PivCardSettings&) const = default;
};

struct PivSettings {
  bool enabled = false;
  std::vector<std::string> readers{"*"};
  // The slot overlay's database (slot_overlay.h); empty: SlotOverlay::defaultPath().
  std::string overlayFile;
  std::vector<PivCardSettings> cards;
};

}  // namespace dojang::piv
