// KISA-style subject names: "cn=홍길동()0001234567890123,ou=개인,o=SignKorea,c=KR", written most
// specific first (RFC 4514 order) or OpenSSL's "/C=KR/O=SignKorea/CN=..." (encoding order).
// Values are UTF8String; countryName stays PrintableString as X.520 requires.
#pragma once

#include <openssl/x509.h>

#include <string>
#include <vector>

#include "src/common/ossl/owners.h"

namespace dojang::ca {

// Adds o=<brand> and c=KR when the text names no organisation or country.
// Throws dojang::Error(BadInput) on syntax errors and unknown attribute names.
[[nodiscard]] X509NamePtr parseSubject(const std::string& text, const std::string& brand);

// RFC 2253 text with UTF-8 kept readable.
[[nodiscard]] std::string subjectText(const X509_NAME& name);
[[nodiscard]] std::vector<unsigned char> subjectDer(const X509_NAME& name);

}  // namespace dojang::ca
