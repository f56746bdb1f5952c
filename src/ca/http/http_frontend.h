// HTTP transport for CMP (RFC 6712): POST application/pkixcmp bodies to the CMP service, and the
// CRL at its distribution point. Bodies are capped; anything that is not CMP gets a 4xx and the
// server keeps serving.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

namespace dojang::ca {

class CmpService;

inline constexpr size_t kMaxRequestBodyBytes = 64 * 1024;
inline constexpr const char* kCmpContentType = "application/pkixcmp";
inline constexpr const char* kCrlPath = "/crl";

class HttpFrontend final {
 public:
  explicit HttpFrontend(CmpService& service);
  ~HttpFrontend();
  HttpFrontend(const HttpFrontend&) = delete;
  HttpFrontend& operator=(const HttpFrontend&) = delete;

  // Binds the listening socket; port 0 picks a free port. Returns the bound port.
  int bind(const std::string& address, int port);
  // Serves until stop() is called from another thread.
  void run();
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> m_impl;
};

}  // namespace dojang::ca
