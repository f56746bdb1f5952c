#include "drivers/vendor_module/attribute_template.h"

#include "src/common/errors/error.h"

namespace dojang::vendor {
namespace {
// Some modules reject a NULL pValue even with length 0; empty values point here instead.
CK_BYTE g_emptyValue[1] = {0};
}  // namespace

bool isNestedTemplate(CK_ATTRIBUTE_TYPE type) noexcept {
  return type == CKA_WRAP_TEMPLATE || type == CKA_UNWRAP_TEMPLATE || type == CKA_DERIVE_TEMPLATE;
}

Template::Template(const token::AttributeList& attributes) {
  m_types.reserve(attributes.size());
  m_values.reserve(attributes.size());
  for (const token::AttributeValue& attribute : attributes) {
    add(attribute.type, attribute.value);
  }
}

void Template::add(CK_ATTRIBUTE_TYPE type, std::span<const std::uint8_t> value) {
  if (isNestedTemplate(type)) {
    fail(CKR_ATTRIBUTE_TYPE_INVALID,
         "attribute " + std::to_string(type) + " holds a nested template, which dojang cannot pass on");
  }
  m_types.push_back(type);
  m_values.emplace_back(value.begin(), value.end());
}

void Template::addBool(CK_ATTRIBUTE_TYPE type, bool value) {
  const CK_BBOOL flag = value ? CK_TRUE : CK_FALSE;
  add(type, std::span<const std::uint8_t>(&flag, 1));
}

void Template::addUlong(CK_ATTRIBUTE_TYPE type, CK_ULONG value) {
  add(type, std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(&value), sizeof value));
}

CK_ATTRIBUTE* Template::data() {
  m_attributes.clear();
  m_attributes.reserve(m_types.size());
  for (std::size_t i = 0; i < m_types.size(); ++i) {
    token::Bytes& value = m_values[i];
    m_attributes.push_back(CK_ATTRIBUTE{m_types[i], value.empty() ? g_emptyValue : value.data(),
                                        static_cast<CK_ULONG>(value.size())});
  }
  return m_attributes.data();
}

}  // namespace dojang::vendor
