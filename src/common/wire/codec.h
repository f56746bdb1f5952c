// Encoder and decoder for the wire types. Little-endian fixed-width integers; byte strings,
// strings and lists carry a u32 count. The decoder enforces every limit in wire_limits.h before it
// allocates, so a hostile frame can cost at most its own size.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "src/common/wire/calls.h"
#include "src/common/wire/wire_limits.h"

namespace dojang::wire {

class MalformedFrame final : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Bytes reserved at the front of every outgoing frame for the transport's length prefix.
inline constexpr std::size_t kFrameHeaderBytes = 4;

template <class T>
concept WireStruct = requires(T& value) { value.fields(); };

// The exact number of bytes Encoder writes for a value, so that a frame is allocated once: a
// frame that grew by reallocation would leave unwiped copies of a PIN or imported key behind.
class Sizer final {
 public:
  static constexpr std::size_t size(bool) { return 1; }
  static constexpr std::size_t size(std::uint8_t) { return 1; }
  static constexpr std::size_t size(std::uint16_t) { return 2; }
  static constexpr std::size_t size(std::uint32_t) { return 4; }
  static constexpr std::size_t size(std::uint64_t) { return 8; }
  static constexpr std::size_t size(std::int32_t) { return 4; }
  template <class E>
    requires std::is_enum_v<E>
  static constexpr std::size_t size(E) {
    return sizeof(std::underlying_type_t<E>);
  }
  static std::size_t size(const std::string& value) { return 4 + value.size(); }
  static std::size_t size(const Bytes& value) { return 4 + value.size(); }
  template <class T>
  static std::size_t size(const std::vector<T>& values) {
    std::size_t total = 4;
    for (const auto& value : values) {
      total += size(value);
    }
    return total;
  }
  template <WireStruct T>
  static std::size_t size(const T& value) {
    return std::apply([](const auto&... field) { return (std::size_t{0} + ... + size(field)); }, value.fields());
  }
};

// Empties `frame` and gives it room for `size` bytes. A buffer too small is wiped before it is
// freed, since it may have held a PIN or key material.
void prepareFrame(Bytes& frame, std::size_t size);

class Encoder final {
 public:
  explicit Encoder(Bytes& out) : m_out(out) {}

  void write(bool value) { m_out.push_back(value ? 1 : 0); }
  void write(std::uint8_t value) { m_out.push_back(value); }
  void write(std::uint16_t value) { writeLittleEndian(value); }
  void write(std::uint32_t value) { writeLittleEndian(value); }
  void write(std::uint64_t value) { writeLittleEndian(value); }
  // Two's complement, as the u32 of the same bits.
  void write(std::int32_t value) { write(static_cast<std::uint32_t>(value)); }
  template <class E>
    requires std::is_enum_v<E>
  void write(E value) {
    write(static_cast<std::underlying_type_t<E>>(value));
  }
  void write(const std::string& value) { writeBlob(value.data(), value.size()); }
  void write(const Bytes& value) { writeBlob(value.data(), value.size()); }
  template <class T>
  void write(const std::vector<T>& values) {
    write(static_cast<std::uint32_t>(values.size()));
    for (const auto& value : values) {
      write(value);
    }
  }
  template <WireStruct T>
  void write(const T& value) {
    std::apply([&](const auto&... field) { (write(field), ...); }, value.fields());
  }

 private:
  template <class Int>
  void writeLittleEndian(Int value) {
    for (std::size_t i = 0; i < sizeof(Int); ++i) {
      m_out.push_back(static_cast<std::uint8_t>(value >> (8 * i)));
    }
  }
  void writeBlob(const void* data, std::size_t size) {
    write(static_cast<std::uint32_t>(size));
    const auto* bytes = static_cast<const std::uint8_t*>(data);
    m_out.insert(m_out.end(), bytes, bytes + size);
  }

  Bytes& m_out;
};

class Decoder final {
 public:
  explicit Decoder(std::span<const std::uint8_t> in) : m_in(in) {}

  void read(bool& value) {
    std::uint8_t byte = 0;
    read(byte);
    if (byte > 1) {
      throw MalformedFrame("boolean out of range");
    }
    value = byte == 1;
  }
  void read(std::uint8_t& value) { readLittleEndian(value); }
  void read(std::uint16_t& value) { readLittleEndian(value); }
  void read(std::uint32_t& value) { readLittleEndian(value); }
  void read(std::uint64_t& value) { readLittleEndian(value); }
  void read(std::int32_t& value) {
    std::uint32_t bits = 0;
    readLittleEndian(bits);
    value = static_cast<std::int32_t>(bits);
  }
  template <class E>
    requires std::is_enum_v<E>
  void read(E& value) {
    std::underlying_type_t<E> raw{};
    read(raw);
    value = static_cast<E>(raw);
  }
  void read(std::string& value) {
    const std::size_t size = readLength(kMaxStringBytes);
    value.assign(reinterpret_cast<const char*>(m_in.data() + m_pos), size);
    m_pos += size;
  }
  void read(Bytes& value) {
    const std::size_t size = readLength(kMaxDataBytes);
    value.assign(m_in.begin() + static_cast<std::ptrdiff_t>(m_pos),
                 m_in.begin() + static_cast<std::ptrdiff_t>(m_pos + size));
    m_pos += size;
  }
  template <class T>
  void read(std::vector<T>& values) {
    std::uint32_t count = 0;
    read(count);
    // Every element takes at least one byte, so a count beyond what is left is a lie.
    if (count > kMaxListCount || count > remaining()) {
      throw MalformedFrame("list count out of range");
    }
    values.clear();
    values.resize(count);
    for (auto& value : values) {
      read(value);
    }
  }
  template <WireStruct T>
  void read(T& value) {
    std::apply([&](auto&... field) { (read(field), ...); }, value.fields());
  }

  [[nodiscard]] std::size_t remaining() const noexcept { return m_in.size() - m_pos; }
  // A frame must be consumed exactly: trailing bytes mean the peer speaks something else.
  void expectEnd() const {
    if (remaining() != 0) {
      throw MalformedFrame("trailing bytes after message");
    }
  }

 private:
  template <class Int>
  void readLittleEndian(Int& value) {
    need(sizeof(Int));
    Int result = 0;
    for (std::size_t i = 0; i < sizeof(Int); ++i) {
      result = static_cast<Int>(result | (static_cast<Int>(m_in[m_pos + i]) << (8 * i)));
    }
    m_pos += sizeof(Int);
    value = result;
  }
  std::size_t readLength(std::size_t limit) {
    std::uint32_t size = 0;
    read(size);
    if (size > limit) {
      throw MalformedFrame("length over limit");
    }
    need(size);
    return size;
  }
  void need(std::size_t size) const {
    if (size > remaining()) {
      throw MalformedFrame("truncated frame");
    }
  }

  std::span<const std::uint8_t> m_in;
  std::size_t m_pos = 0;
};

// A request frame ready for Transport::send (header space reserved, call id, fields).
template <CallId id>
void encodeRequest(const typename Call<id>::Request& request, Bytes& frame) {
  prepareFrame(frame, kFrameHeaderBytes + Sizer::size(std::uint16_t{}) + Sizer::size(request));
  frame.assign(kFrameHeaderBytes, 0);
  Encoder encoder(frame);
  encoder.write(static_cast<std::uint16_t>(id));
  encoder.write(request);
}

// A reply frame: rv, then the fields only on success.
template <class Reply>
void encodeReply(std::uint64_t rv, const Reply* reply, Bytes& frame) {
  const bool withFields = rv == 0 && reply != nullptr;
  prepareFrame(frame, kFrameHeaderBytes + Sizer::size(rv) + (withFields ? Sizer::size(*reply) : 0));
  frame.assign(kFrameHeaderBytes, 0);
  Encoder encoder(frame);
  encoder.write(rv);
  if (withFields) {
    encoder.write(*reply);
  }
}

// Overwrites a buffer that may have held a PIN or key material before it is reused or freed:
// its whole capacity, not only its current size. The size is kept.
void wipe(Bytes& buffer) noexcept;
void wipe(std::string& buffer) noexcept;

}  // namespace dojang::wire
