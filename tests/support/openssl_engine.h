// OpenSSL's pkcs11 engine (libp11) pointed at one PKCS#11 module, as the tests' openssl, curl and
// openssl cmp runs load it.
#pragma once

#include <string>

namespace dojang::test {

// An OPENSSL_CONF text that loads the pkcs11 engine with MODULE_PATH = `module`. libp11 0.4.12
// takes the module from there (or $PKCS11_MODULE_PATH); naming it keeps the engine from falling
// back to p11-kit's proxy.
inline std::string pkcs11EngineConfig(const std::string& module) {
  return "openssl_conf = openssl_init\n"
         "[openssl_init]\n"
         "engines = engine_section\n"
         "[engine_section]\n"
         "pkcs11 = pkcs11_section\n"
         "[pkcs11_section]\n"
         "engine_id = pkcs11\n"
         "MODULE_PATH = " +
         module + "\ninit = 0\n";
}

}  // namespace dojang::test
