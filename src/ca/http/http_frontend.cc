#include "src/ca/http/http_frontend.h"

#include <httplib.h>

#include <iostream>

#include "src/ca/cmp_server/cmp_service.h"
#include "src/ca/http/bounded_server.h"
#include "src/common/errors/error.h"

namespace dojang::ca {
namespace {

// "application/pkixcmp; charset=..." still names the CMP media type.
bool isCmpContentType(const std::string& header) {
  const std::string mediaType = header.substr(0, header.find(';'));
  std::string trimmed;
  for (char c : mediaType) {
    if (c != ' ' && c != '\t') {
      trimmed += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
  }
  return trimmed == kCmpContentType;
}

// Content-Length is digits only and at most kMaxRequestBodyBytes.
bool declaredLengthFits(const std::string& value) {
  if (value.empty() || value.size() > 12 || value.find_first_not_of("0123456789") != std::string::npos) {
    return false;
  }
  return std::stoull(value) <= kMaxRequestBodyBytes;
}

void plainError(httplib::Response& response, int status, const std::string& message) {
  response.status = status;
  response.set_content(message + "\n", "text/plain; charset=utf-8");
}

}  // namespace

struct HttpFrontend::Impl final {
  explicit Impl(CmpService& cmp) : service(cmp), server(ConnectionLimits{}) {}
  CmpService& service;
  BoundedServer server;
};

HttpFrontend::HttpFrontend(CmpService& service) : m_impl(std::make_unique<Impl>(service)) {
  BoundedServer& server = m_impl->server;
  server.set_payload_max_length(kMaxRequestBodyBytes);

  auto handleCmp = [this](const httplib::Request& request, httplib::Response& response) {
    if (!isCmpContentType(request.get_header_value("Content-Type"))) {
      plainError(response, 415, std::string("CMP requests must be POSTed as ") + kCmpContentType);
      return;
    }
    if (request.body.empty()) {
      plainError(response, 400, "empty body: expected a DER-encoded CMP message");
      return;
    }
    try {
      const std::vector<unsigned char> body(request.body.begin(), request.body.end());
      const std::vector<unsigned char> answer = m_impl->service.handle(body);
      response.status = 200;
      response.set_content(std::string(answer.begin(), answer.end()), kCmpContentType);
    } catch (const Error& error) {
      if (error.kind() == ErrorKind::BadInput) {
        plainError(response, 400, error.what());
      } else {
        std::cerr << (std::string("dojang-ca: internal error: ") + error.what() + "\n") << std::flush;
        plainError(response, 500, "internal error; see the CA's log");
      }
    } catch (const std::exception& error) {
      std::cerr << (std::string("dojang-ca: internal error: ") + error.what() + "\n") << std::flush;
      plainError(response, 500, "internal error; see the CA's log");
    }
  };
  // RFC 6712 leaves the path to the server; RFC 9483 suggests /.well-known/cmp.
  server.Post("/", handleCmp);
  server.Post("/pkix/", handleCmp);
  server.Post("/.well-known/cmp", handleCmp);
  server.Post(R"(/\.well-known/cmp/p/[A-Za-z0-9._-]+)", handleCmp);

  server.Get(kCrlPath, [this](const httplib::Request&, httplib::Response& response) {
    try {
      const std::vector<unsigned char> crl = m_impl->service.crlDer();
      response.set_content(std::string(crl.begin(), crl.end()), "application/pkix-crl");
    } catch (const std::exception& error) {
      std::cerr << (std::string("dojang-ca: CRL failed: ") + error.what() + "\n") << std::flush;
      plainError(response, 500, "cannot produce the CRL; see the CA's log");
    }
  });
  server.Get("/", [](const httplib::Request&, httplib::Response& response) {
    response.set_content(std::string("dojang-ca: POST ") + kCmpContentType + " to this URL; CRL at " + kCrlPath +
                             "\n",
                         "text/plain; charset=utf-8");
  });
  // httplib answers oversized bodies (413) and unknown paths itself; give them a readable body.
  // Refuse oversized, unsized or non-CMP POSTs from their headers, before httplib reads (or skips)
  // the body: a client announcing a huge Content-Length gets its answer at once.
  server.set_pre_routing_handler([](const httplib::Request& request, httplib::Response& response) {
    if (request.method != "POST") {
      return httplib::Server::HandlerResponse::Unhandled;
    }
    const bool chunked = request.get_header_value("Transfer-Encoding").find("chunked") != std::string::npos;
    if (!request.has_header("Content-Length") && !chunked) {
      plainError(response, 411, "CMP requests need a Content-Length");
    } else if (request.has_header("Content-Length") &&
               !declaredLengthFits(request.get_header_value("Content-Length"))) {
      plainError(response, 413, "request body larger than " + std::to_string(kMaxRequestBodyBytes) + " bytes");
    } else if (!isCmpContentType(request.get_header_value("Content-Type"))) {
      plainError(response, 415, std::string("CMP requests must be POSTed as ") + kCmpContentType);
    } else {
      return httplib::Server::HandlerResponse::Unhandled;
    }
    response.set_header("Connection", "close");
    return httplib::Server::HandlerResponse::Handled;
  });
  // Keep-alive only for HTTP/1.1 answers that went well. OpenSSL 3.0's CMP client sends HTTP/1.0
  // with "Connection: keep-alive" and reuses the connection for certConf unless told otherwise,
  // while httplib closes such HTTP/1.0 connections; saying so avoids a failed certConf. After an
  // error the rest of the stream cannot be trusted (a body left unread, a stalled header).
  server.set_post_routing_handler([](const httplib::Request& request, httplib::Response& response) {
    if (request.version != "HTTP/1.1" || response.status >= 400 ||
        response.get_header_value("Connection") == "close") {
      response.headers.erase("Keep-Alive");
      if (response.get_header_value("Connection") != "close") {
        response.set_header("Connection", "close");
      }
      BoundedServer::closeAfterThisResponse();
    }
  });
  server.set_error_handler([](const httplib::Request&, httplib::Response& response) {
    if (!response.body.empty()) {
      return;
    }
    if (response.status == 413) {
      plainError(response, 413, "request body larger than " + std::to_string(kMaxRequestBodyBytes) + " bytes");
    } else {
      plainError(response, response.status, "HTTP " + std::to_string(response.status));
    }
  });
}

HttpFrontend::~HttpFrontend() = default;

int HttpFrontend::bind(const std::string& address, int port) {
  int bound = port == 0 ? m_impl->server.bind_to_any_port(address) : (m_impl->server.bind_to_port(address, port) ? port : -1);
  if (bound <= 0 || !m_impl->server.widenListenBacklog()) {
    throw Error(CKR_FUNCTION_FAILED, ErrorKind::Fatal,
                "cannot listen on " + address + ":" + std::to_string(port));
  }
  return bound;
}

void HttpFrontend::run() { m_impl->server.listen_after_bind(); }

void HttpFrontend::stop() { m_impl->server.stop(); }

}  // namespace dojang::ca
