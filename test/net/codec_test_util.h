// Helpers for the codec tests: msgpack built from C++ values, to feed the
// decoders what their encoders never write.
#pragma once

#include <string>
#include <utility>
#include <variant>

#ifndef MSGPACK_NO_BOOST
#define MSGPACK_NO_BOOST
#endif
#include <msgpack.hpp>

#include "net/peer_codec.h"

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

// Decodes a peer frame that must be of kind T (RaftFrame, LeaderHints or
// RemovedNotice); InvalidArgument for another kind.
template <typename T>
Status DecodePeerFrameAs(std::string_view bytes, T* out) {
  PeerFrame frame;
  Status s = DecodePeerFrame(bytes, &frame);
  if (!s.ok()) return s;
  T* got = std::get_if<T>(&frame);
  if (got == nullptr) return Status::InvalidArgument("another kind of peer frame");
  *out = std::move(*got);
  return Status::OK();
}

// A Raft message; a snapshot chunk only when `chunk` is given.
inline Status DecodeRaftMessage(std::string_view bytes, raft::Message* m,
                                SnapshotChunk* chunk = nullptr) {
  RaftFrame frame;
  Status s = DecodePeerFrameAs(bytes, &frame);
  if (!s.ok()) return s;
  if (frame.chunk.total != 0 && chunk == nullptr) {
    return Status::InvalidArgument("a snapshot chunk where none is expected");
  }
  *m = std::move(frame.message);
  if (chunk != nullptr) *chunk = frame.chunk;
  return Status::OK();
}

}  // namespace kv::net
