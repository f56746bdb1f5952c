// A byte buffer for PINs and other secrets: wiped when it dies, never copied by accident.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>
#include <vector>

namespace dojang {

class SecureBytes final {
 public:
  SecureBytes() = default;
  explicit SecureBytes(std::span<const std::uint8_t> bytes) : m_bytes(bytes.begin(), bytes.end()) {}
  explicit SecureBytes(std::string_view text) : m_bytes(text.begin(), text.end()) {}
  SecureBytes(const SecureBytes&) = delete;
  SecureBytes& operator=(const SecureBytes&) = delete;
  SecureBytes(SecureBytes&& other) noexcept : m_bytes(std::move(other.m_bytes)) {}
  SecureBytes& operator=(SecureBytes&& other) noexcept {
    if (this != &other) {
      wipe();
      m_bytes = std::move(other.m_bytes);
    }
    return *this;
  }
  ~SecureBytes() { wipe(); }

  [[nodiscard]] const std::uint8_t* data() const noexcept { return m_bytes.data(); }
  [[nodiscard]] std::size_t size() const noexcept { return m_bytes.size(); }
  [[nodiscard]] bool empty() const noexcept { return m_bytes.empty(); }
  [[nodiscard]] std::span<const std::uint8_t> view() const noexcept { return m_bytes; }

 private:
  void wipe() noexcept {
    if (!m_bytes.empty()) {
      explicit_bzero(m_bytes.data(), m_bytes.size());
    }
  }
  std::vector<std::uint8_t> m_bytes;
};

}  // namespace dojang
