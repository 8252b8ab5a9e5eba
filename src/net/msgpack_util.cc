#include "net/msgpack_util.h"

#include <algorithm>
#include <cassert>
#include <exception>

namespace kv::net {

void PackBytes(Packer& pk, std::string_view bytes) {
  pk.pack_bin(static_cast<uint32_t>(bytes.size()));
  pk.pack_bin_body(bytes.data(), static_cast<uint32_t>(bytes.size()));
}

void PackStr(Packer& pk, std::string_view s) {
  pk.pack_str(static_cast<uint32_t>(s.size()));
  pk.pack_str_body(s.data(), static_cast<uint32_t>(s.size()));
}

// The header's place holds one byte until Finish(): the whole header when the
// map has fewer than 16 fields (a fixmap), as most of ours do.
MapWriter::MapWriter(std::string* out)
    : out_(out), header_(out->size()), buffer_(out), packer_(buffer_) {
  out_->push_back('\0');
}

MapWriter::~MapWriter() { assert(finished_); }

Packer& MapWriter::Field(std::string_view name) {
  assert(!finished_);
  ++fields_;
  PackStr(packer_, name);
  return packer_;
}

void MapWriter::Finish() {
  assert(!finished_);
  finished_ = true;
  std::string header;
  StringBuffer buffer(&header);
  Packer(buffer).pack_map(fields_);
  out_->replace(header_, 1, header);
}

bool GetUint(const msgpack::object& o, uint64_t* v) {
  if (o.type != msgpack::type::POSITIVE_INTEGER) return false;
  *v = o.via.u64;
  return true;
}

bool GetUint32(const msgpack::object& o, uint32_t* v) {
  uint64_t wide = 0;
  if (!GetUint(o, &wide) || wide > UINT32_MAX) return false;
  *v = static_cast<uint32_t>(wide);
  return true;
}

bool GetShard(const msgpack::object& o, int64_t* v) {
  if (o.type == msgpack::type::NIL) {
    *v = -1;
    return true;
  }
  uint32_t shard = 0;
  if (!GetUint32(o, &shard)) return false;
  *v = shard;
  return true;
}

bool GetBool(const msgpack::object& o, bool* v) {
  if (o.type != msgpack::type::BOOLEAN) return false;
  *v = o.via.boolean;
  return true;
}

bool GetBytes(const msgpack::object& o, std::string* v) {
  if (o.type == msgpack::type::STR) {
    v->assign(o.via.str.ptr, o.via.str.size);
    return true;
  }
  if (o.type == msgpack::type::BIN) {
    v->assign(o.via.bin.ptr, o.via.bin.size);
    return true;
  }
  return false;
}

bool GetIdList(const msgpack::object& o, std::vector<uint64_t>* ids) {
  if (o.type != msgpack::type::ARRAY) return false;
  ids->clear();
  for (uint32_t i = 0; i < o.via.array.size; ++i) {
    uint64_t id = 0;
    if (!GetUint(o.via.array.ptr[i], &id)) return false;
    ids->push_back(id);
  }
  return true;
}

Status Unpack(std::string_view bytes, msgpack::object_handle* oh) {
  // msgpack allocates an array's or a map's elements (24 bytes each) as soon
  // as it reads the header. Every element takes a byte at least (a map entry
  // two), so capping the counts at the input's size costs a well-formed
  // frame nothing and keeps a small one that claims a long array from making
  // us allocate much: at most a multiple of its own size.
  const uint32_t most = static_cast<uint32_t>(std::min<size_t>(bytes.size(), 1 << 20));
  const msgpack::unpack_limit limits(/*array=*/most, /*map=*/std::min<uint32_t>(most / 2, 1024),
                                     /*str=*/64 << 20, /*bin=*/64 << 20, /*ext=*/0, /*depth=*/8);
  // Strings and bins are not copied: they point into `bytes`.
  const auto in_place = [](msgpack::type::object_type, size_t, void*) { return true; };
  try {
    size_t offset = 0;
    *oh = msgpack::unpack(bytes.data(), bytes.size(), offset, in_place, nullptr, limits);
    if (offset != bytes.size()) return Status::InvalidArgument("trailing bytes after msgpack");
  } catch (const std::exception& e) {
    return Status::InvalidArgument(std::string("not msgpack: ") + e.what());
  }
  return Status::OK();
}

}  // namespace kv::net
