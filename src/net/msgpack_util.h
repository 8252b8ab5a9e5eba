// msgpack helpers shared by the codecs (peer_codec, client_codec): internal
// to src/net, so that msgpack stays out of every other layer's headers.
//
// Writers append to a std::string. Readers never trust their input: each
// checks the type and says false on a mismatch; Unpack bounds the memory a
// hostile frame can make us use and turns msgpack's exceptions into Status.
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#ifndef MSGPACK_NO_BOOST
#define MSGPACK_NO_BOOST
#endif
#include <msgpack.hpp>

#include "common/status.h"

namespace kv::net {

// msgpack's packer writes through any object with write(data, size).
class StringBuffer {
 public:
  explicit StringBuffer(std::string* out) : out_(out) {}
  void write(const char* data, size_t size) { out_->append(data, size); }

 private:
  std::string* out_;
};

using Packer = msgpack::packer<StringBuffer>;

// Writes `bytes` as msgpack bin, `s` as msgpack str.
void PackBytes(Packer& pk, std::string_view bytes);
void PackStr(Packer& pk, std::string_view s);

// Writes one msgpack map at the end of a string and counts its fields
// itself: Finish() writes the header for the fields written, the very bytes
// pack_map(n) would have written before them.
//   MapWriter map(&out);
//   map.Uint("id", 7);
//   map.Str("status", "OK");
//   map.Finish();
class MapWriter {
 public:
  // Starts a map at the end of *out, which must outlive the writer.
  explicit MapWriter(std::string* out);
  MapWriter(const MapWriter&) = delete;
  MapWriter& operator=(const MapWriter&) = delete;
  // REQUIRES: Finish() was called.
  ~MapWriter();

  // Writes the field's name and returns the packer for its value.
  // REQUIRES: the caller then writes exactly one msgpack object at the end of
  // the string, with this packer or another writer (a nested map), before
  // the next field.
  Packer& Field(std::string_view name);
  void Uint(std::string_view name, uint64_t v) { Field(name).pack_uint64(v); }
  void Str(std::string_view name, std::string_view s) { PackStr(Field(name), s); }
  void Bin(std::string_view name, std::string_view bytes) { PackBytes(Field(name), bytes); }

  // Writes the map's header. REQUIRES: called once, after the last field.
  void Finish();

 private:
  std::string* out_;
  size_t header_;  // where the header goes in *out_
  uint32_t fields_ = 0;
  bool finished_ = false;
  StringBuffer buffer_;
  Packer packer_;
};

// Readers: each returns false when `o` is not of the type asked for.
bool GetUint(const msgpack::object& o, uint64_t* v);
// A uint below 2^32.
bool GetUint32(const msgpack::object& o, uint32_t* v);
// A shard id: a uint below 2^32; nil reads as -1 ("no shard").
bool GetShard(const msgpack::object& o, int64_t* v);
bool GetBool(const msgpack::object& o, bool* v);
// Accepts str and bin alike: clients in other languages send either.
bool GetBytes(const msgpack::object& o, std::string* v);
// An array of uints.
bool GetIdList(const msgpack::object& o, std::vector<uint64_t>* ids);

// Whether the arrays and maps of the msgpack in `bytes` claim no more
// elements in all than `bytes` holds bytes (a map entry counts two). Reads
// only headers and allocates nothing; input that ends early counts as fitting
// (msgpack reports it).
bool ClaimsFit(std::string_view bytes);

// Unpacks `bytes`, which must hold exactly one msgpack object, into *oh.
// InvalidArgument for anything else or anything over the limits. The strs
// and bins of *oh point into `bytes`: REQUIRES `bytes` outlives *oh.
Status Unpack(std::string_view bytes, msgpack::object_handle* oh);

// Calls field(name, value) for each entry of the map `o`; field returns false
// when the value is malformed. Unknown names are the callback's to ignore.
// `what` names the map in errors.
template <typename F>
Status ForEachField(const msgpack::object& o, const char* what, F field) {
  if (o.type != msgpack::type::MAP) {
    return Status::InvalidArgument(std::string(what) + " is not a msgpack map");
  }
  for (uint32_t i = 0; i < o.via.map.size; ++i) {
    const msgpack::object_kv& kv = o.via.map.ptr[i];
    std::string name;
    if (!GetBytes(kv.key, &name)) return Status::InvalidArgument("map keys must be strings");
    if (!field(name, kv.val)) {
      return Status::InvalidArgument(std::string(what) + " field \"" + name + "\" is malformed");
    }
  }
  return Status::OK();
}

// Unpacks `bytes`, which must hold one map, and walks it with ForEachField.
template <typename F>
Status DecodeMap(std::string_view bytes, const char* what, F field) {
  msgpack::object_handle oh;
  Status s = Unpack(bytes, &oh);
  if (!s.ok()) return s;
  return ForEachField(oh.get(), what, field);
}

}  // namespace kv::net
