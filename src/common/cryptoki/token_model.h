// CK_TOKEN_INFO.model texts with a meaning beyond the model. The PIV driver shows a card that
// still has the factory management key with this model, and `dojang tokens` warns about it
// (the PKCS#11 token info has no other field a client can see it in).
#pragma once

#include <string_view>

namespace dojang {

inline constexpr const char* kDefaultManagementKeyModel = "PIV (default MK)";  // 16 characters

[[nodiscard]] inline bool hasDefaultManagementKey(std::string_view model) {
  return model == kDefaultManagementKeyModel;
}

}  // namespace dojang
