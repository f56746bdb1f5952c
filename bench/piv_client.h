// The client side of dojang-pivbench: what one PKCS#11 client process does against the PIV card,
// through whichever module it is given (dojang-pkcs11.so or opensc-pkcs11.so), timed inside the
// process. The harness (bench/pivbench.cc) starts each run as a fresh process, so a "cold start"
// really is one: nothing of the module is loaded or initialised before the clock starts.
//
// Each run prints one line of `key=value` pairs on stdout for the harness. The APDUs the card
// received during the timed part are counted from the card's --apdu-log (read before the clock
// starts and after it stops), so the count needs no cooperation from the harness.
#pragma once

#include <filesystem>
#include <string>

namespace dojang::bench {

struct PivClientOptions {
  std::string module;             // the PKCS#11 module to dlopen
  std::filesystem::path apduLog;  // the card's APDU log
  std::string pin;                // for `sign`
  int signatures = 20;            // for `sign`: timed signatures after two warm-up ones
};

// C_Initialize through listing every certificate and key of every initialised token with their
// attributes (sizes first, then values, as NSS and OpenSSL's pkcs11 provider do), then
// C_Finalize. Prints load_us (dlopen + C_GetFunctionList), init_us (C_Initialize alone), list_us
// (C_Initialize .. the last C_GetAttributeValue), finalize_us, apdus (during list_us), tokens, certs, pubkeys, privkeys,
// cert_bytes.
int runListClient(const PivClientOptions& options);

// C_Initialize, login, and ECDSA P-256 signatures over a 32-byte hash with the private key whose
// CKA_ID is 01 (PIV slot 9A for dojang and OpenSC alike), each checked with OpenSSL against the
// certificate with the same CKA_ID. Prints sign_us_median, sign_us_min, sign_us_max, signatures,
// apdus_per_signature.
int runSignClient(const PivClientOptions& options);

}  // namespace dojang::bench
