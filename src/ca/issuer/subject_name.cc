#include "src/ca/issuer/subject_name.h"

#include <openssl/err.h>
#include <openssl/objects.h>

#include <algorithm>
#include <cctype>
#include <utility>

#include "src/common/errors/foreign_errors.h"

namespace dojang::ca {
namespace {

[[noreturn]] void badSubject(const std::string& text, const std::string& why) {
  throw Error(CKR_ARGUMENTS_BAD, ErrorKind::BadInput, "subject '" + text + "': " + why);
}

std::string trim(const std::string& text) {
  size_t begin = text.find_first_not_of(" \t");
  size_t end = text.find_last_not_of(" \t");
  return begin == std::string::npos ? std::string() : text.substr(begin, end - begin + 1);
}

// Splits on an unescaped separator; "\," keeps a literal comma in a value.
std::vector<std::string> splitUnescaped(const std::string& text, char separator) {
  std::vector<std::string> parts;
  std::string current;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 1 < text.size()) {
      current += text[++i];
    } else if (text[i] == separator) {
      parts.push_back(current);
      current.clear();
    } else {
      current += text[i];
    }
  }
  parts.push_back(current);
  return parts;
}

// Accepts lower-case short names (cn, ou, o, c) as people write them.
int attributeNid(const std::string& key) {
  int nid = OBJ_txt2nid(key.c_str());
  if (nid == NID_undef) {
    std::string upper = key;
    std::transform(upper.begin(), upper.end(), upper.begin(),
                   [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
    nid = OBJ_txt2nid(upper.c_str());
  }
  return nid;
}

}  // namespace

X509NamePtr parseSubject(const std::string& text, const std::string& brand) {
  std::vector<std::pair<std::string, std::string>> attributes;  // in DER (encoding) order
  const std::string trimmed = trim(text);
  if (trimmed.empty()) {
    badSubject(text, "empty");
  }
  const bool slashForm = trimmed.front() == '/';
  std::vector<std::string> parts = splitUnescaped(slashForm ? trimmed.substr(1) : trimmed, slashForm ? '/' : ',');
  if (!slashForm) {
    std::reverse(parts.begin(), parts.end());  // RFC 4514 lists the most specific RDN first
  }
  for (const std::string& part : parts) {
    size_t equals = part.find('=');
    if (equals == std::string::npos) {
      badSubject(text, "'" + part + "' is not name=value");
    }
    std::string key = trim(part.substr(0, equals));
    std::string value = trim(part.substr(equals + 1));
    if (key.empty() || value.empty()) {
      badSubject(text, "'" + part + "' has an empty name or value");
    }
    attributes.emplace_back(key, value);
  }

  auto has = [&](int nid) {
    return std::any_of(attributes.begin(), attributes.end(),
                       [&](const auto& attribute) { return attributeNid(attribute.first) == nid; });
  };
  // Missing o and c go in front, in encoding order c, o, then the rest.
  if (!has(NID_organizationName)) {
    attributes.insert(attributes.begin(), {"O", brand});
  }
  if (!has(NID_countryName)) {
    attributes.insert(attributes.begin(), {"C", "KR"});
  }

  X509NamePtr name(checkOpenssl(X509_NAME_new(), "X509_NAME_new"));
  for (const auto& [key, value] : attributes) {
    const int nid = attributeNid(key);
    if (nid == NID_undef) {
      badSubject(text, "unknown attribute '" + key + "'");
    }
    if (X509_NAME_add_entry_by_NID(name.get(), nid, MBSTRING_UTF8,
                                   reinterpret_cast<const unsigned char*>(value.data()),
                                   static_cast<int>(value.size()), -1, 0) != 1) {
      ERR_clear_error();
      badSubject(text, "value '" + value + "' is not allowed for " + key);
    }
  }
  return name;
}

std::string subjectText(const X509_NAME& name) {
  BioPtr bio(checkOpenssl(BIO_new(BIO_s_mem()), "BIO_new"));
  X509_NAME_print_ex(bio.get(), &name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
  char* data = nullptr;
  long length = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(length));
}

std::vector<unsigned char> subjectDer(const X509_NAME& name) {
  unsigned char* der = nullptr;
  int length = i2d_X509_NAME(&name, &der);
  if (length <= 0) {
    throwOpenssl("encoding a subject name");
  }
  OpensslStringPtr owner(reinterpret_cast<char*>(der));
  return std::vector<unsigned char>(der, der + length);
}

}  // namespace dojang::ca
