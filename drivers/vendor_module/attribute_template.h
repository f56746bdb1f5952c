// CK_ATTRIBUTE arrays that own the bytes they point to, built from the daemon's AttributeList.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "drivers/token/token.h"
#include "src/common/cryptoki/cryptoki.h"

namespace dojang::vendor {

// CKA_WRAP_TEMPLATE, CKA_UNWRAP_TEMPLATE, CKA_DERIVE_TEMPLATE: arrays of CK_ATTRIBUTE with
// pointers inside, which cannot travel as plain bytes. (CKA_ALLOWED_MECHANISMS, also flagged
// CKF_ARRAY_ATTRIBUTE, is a flat CK_MECHANISM_TYPE array and can.)
[[nodiscard]] bool isNestedTemplate(CK_ATTRIBUTE_TYPE type) noexcept;

class Template final {
 public:
  Template() = default;
  // Throws Error(CKR_ATTRIBUTE_TYPE_INVALID) for nested templates.
  explicit Template(const token::AttributeList& attributes);
  Template(const Template&) = delete;
  Template& operator=(const Template&) = delete;
  Template(Template&&) noexcept = default;
  Template& operator=(Template&&) noexcept = default;
  ~Template() = default;

  void add(CK_ATTRIBUTE_TYPE type, std::span<const std::uint8_t> value);
  void addBool(CK_ATTRIBUTE_TYPE type, bool value);
  void addUlong(CK_ATTRIBUTE_TYPE type, CK_ULONG value);

  // Valid until the template is changed or destroyed.
  [[nodiscard]] CK_ATTRIBUTE* data();
  [[nodiscard]] CK_ULONG size() const noexcept { return static_cast<CK_ULONG>(m_types.size()); }

 private:
  std::vector<CK_ATTRIBUTE_TYPE> m_types;
  std::vector<token::Bytes> m_values;
  std::vector<CK_ATTRIBUTE> m_attributes;
};

}  // namespace dojang::vendor
