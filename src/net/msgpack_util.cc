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

bool ClaimsFit(std::string_view bytes) {
  const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
  const size_t n = bytes.size();
  size_t pos = 0;
  uint64_t claimed = 0;  // elements claimed by the containers read so far
  uint64_t pending = 1;  // objects still to read
  // Reads a big-endian length of `width` bytes; false at the end of input.
  auto length = [&](size_t width, uint64_t* v) {
    if (width > n - pos) return false;
    *v = 0;
    for (size_t i = 0; i < width; ++i) *v = (*v << 8) | p[pos + i];
    pos += width;
    return true;
  };
  while (pending > 0 && pos < n) {
    --pending;
    const uint8_t t = p[pos++];
    uint64_t skip = 0;   // payload bytes after the header
    uint64_t count = 0;  // elements a container claims (a map entry is two)
    bool ok = true;
    if (t <= 0x7f || t >= 0xe0 || (t >= 0xc0 && t <= 0xc3)) {
      continue;  // fixint, nil, bool (0xc1 is invalid: msgpack says so)
    } else if ((t & 0xf0) == 0x80) {
      count = 2u * (t & 0x0f);
    } else if ((t & 0xf0) == 0x90) {
      count = t & 0x0f;
    } else if ((t & 0xe0) == 0xa0) {
      skip = t & 0x1f;
    } else {
      switch (t) {
        case 0xc4:  // bin8
        case 0xd9:  // str8
          ok = length(1, &skip);
          break;
        case 0xc5:  // bin16
        case 0xda:  // str16
          ok = length(2, &skip);
          break;
        case 0xc6:  // bin32
        case 0xdb:  // str32
          ok = length(4, &skip);
          break;
        case 0xc7:  // ext8, ext16, ext32: the length, then a type byte and the data
        case 0xc8:
        case 0xc9:
          ok = length(size_t{1} << (t - 0xc7), &skip);
          ++skip;
          break;
        case 0xcc:  // uint8, int8
        case 0xd0:
          skip = 1;
          break;
        case 0xcd:  // uint16, int16, fixext1
        case 0xd1:
        case 0xd4:
          skip = 2;
          break;
        case 0xd5:  // fixext2
          skip = 3;
          break;
        case 0xca:  // float32, uint32, int32
        case 0xce:
        case 0xd2:
          skip = 4;
          break;
        case 0xd6:  // fixext4
          skip = 5;
          break;
        case 0xcb:  // float64, uint64, int64
        case 0xcf:
        case 0xd3:
          skip = 8;
          break;
        case 0xd7:  // fixext8
          skip = 9;
          break;
        case 0xd8:  // fixext16
          skip = 17;
          break;
        case 0xdc:  // array16
          ok = length(2, &count);
          break;
        case 0xdd:  // array32
          ok = length(4, &count);
          break;
        case 0xde:  // map16
          ok = length(2, &count);
          count *= 2;
          break;
        case 0xdf:  // map32
          ok = length(4, &count);
          count *= 2;
          break;
      }
    }
    if (!ok) return true;  // truncated: msgpack says so
    claimed += count;
    if (claimed > n) return false;
    pending += count;
    if (skip > n - pos) return true;  // truncated: msgpack says so
    pos += skip;
  }
  return true;
}

Status Unpack(std::string_view bytes, msgpack::object_handle* oh) {
  // msgpack allocates an array's or a map's elements (24 bytes each) as soon
  // as it reads the header. Every element takes a byte at least, so a frame
  // whose containers claim more elements in all than it has bytes is refused
  // before msgpack sees it: no frame makes us allocate much more than its own
  // size, however its containers nest. The limits below bound what is left.
  if (!ClaimsFit(bytes)) {
    return Status::InvalidArgument(
        "not msgpack: its arrays and maps claim more elements "
        "than the frame holds");
  }
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
