// Helpers for the codec tests: msgpack built from C++ values, to feed the
// decoders what their encoders never write.
#pragma once

#include <string>
#include <utility>

#ifndef MSGPACK_NO_BOOST
#define MSGPACK_NO_BOOST
#endif
#include <msgpack.hpp>

namespace kv::net {

// msgpack bytes, put as they are into an Array or a Map.
struct Packed : std::string {
  explicit Packed(std::string bytes) : std::string(std::move(bytes)) {}
};

template <typename T>
void Put(msgpack::sbuffer* buf, const T& value) {
  msgpack::pack(*buf, value);
}

inline void Put(msgpack::sbuffer* buf, const Packed& packed) {
  buf->write(packed.data(), packed.size());
}

// A msgpack array of the arguments, each packed as msgpack packs its type
// (std::vector<char> as bin, std::tuple and std::vector<int> as arrays,
// msgpack::type::nil_t as nil), a Packed as it is.
template <typename... T>
Packed Array(const T&... elements) {
  msgpack::sbuffer buf;
  msgpack::packer<msgpack::sbuffer>(buf).pack_array(sizeof...(T));
  (Put(&buf, elements), ...);
  return Packed(std::string(buf.data(), buf.size()));
}

// A msgpack map of the arguments taken in pairs: key, value, key, value...
template <typename... T>
Packed Map(const T&... keys_and_values) {
  static_assert(sizeof...(T) % 2 == 0, "keys and values come in pairs");
  msgpack::sbuffer buf;
  msgpack::packer<msgpack::sbuffer>(buf).pack_map(sizeof...(T) / 2);
  (Put(&buf, keys_and_values), ...);
  return Packed(std::string(buf.data(), buf.size()));
}

}  // namespace kv::net
