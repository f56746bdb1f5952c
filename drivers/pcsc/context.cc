#include "drivers/pcsc/context.h"

#include <utility>

#include "src/common/errors/foreign_errors.h"

namespace dojang::pcsc {

Context::Context() {
  checkPcsc(SCardEstablishContext(SCARD_SCOPE_USER, nullptr, nullptr, &m_handle), "SCardEstablishContext");
  m_valid = true;
}

Context::Context(Context&& other) noexcept
    : m_handle(std::exchange(other.m_handle, 0)), m_valid(std::exchange(other.m_valid, false)) {}

Context& Context::operator=(Context&& other) noexcept {
  if (this != &other) {
    release();
    m_handle = std::exchange(other.m_handle, 0);
    m_valid = std::exchange(other.m_valid, false);
  }
  return *this;
}

Context::~Context() { release(); }

void Context::release() noexcept {
  if (m_valid) {
    (void)SCardReleaseContext(m_handle);  // nothing to do about a failure on the way out
    m_valid = false;
  }
}

std::vector<std::string> Context::readers() const {
  DWORD length = 0;
  LONG rv = SCardListReaders(m_handle, nullptr, nullptr, &length);
  if (rv == SCARD_E_NO_READERS_AVAILABLE) {
    return {};
  }
  checkPcsc(rv, "SCardListReaders");
  std::string buffer(length, '\0');
  rv = SCardListReaders(m_handle, nullptr, buffer.data(), &length);
  if (rv == SCARD_E_NO_READERS_AVAILABLE) {
    return {};
  }
  checkPcsc(rv, "SCardListReaders");
  buffer.resize(length);
  // A multi-string: names separated by NULs, ended by an empty one.
  std::vector<std::string> names;
  std::size_t start = 0;
  while (start < buffer.size()) {
    const std::size_t end = buffer.find('\0', start);
    const std::string name = buffer.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (name.empty()) {
      break;
    }
    names.push_back(name);
    if (end == std::string::npos) {
      break;
    }
    start = end + 1;
  }
  return names;
}

bool Context::cardPresent(const std::string& reader) const {
  SCARD_READERSTATE state{};
  state.szReader = reader.c_str();
  state.dwCurrentState = SCARD_STATE_UNAWARE;
  const LONG rv = SCardGetStatusChange(m_handle, 0, &state, 1);
  if (rv == SCARD_E_TIMEOUT || rv == SCARD_E_UNKNOWN_READER) {
    return false;
  }
  checkPcsc(rv, "SCardGetStatusChange");
  return (state.dwEventState & SCARD_STATE_PRESENT) != 0 && (state.dwEventState & SCARD_STATE_MUTE) == 0;
}

void Context::cancel() const noexcept {
  if (m_valid) {
    (void)SCardCancel(m_handle);
  }
}

bool serviceGone(LONG rv) noexcept {
  return rv == SCARD_E_NO_SERVICE || rv == SCARD_E_SERVICE_STOPPED || rv == SCARD_F_COMM_ERROR ||
         rv == SCARD_E_INVALID_HANDLE;
}

}  // namespace dojang::pcsc
