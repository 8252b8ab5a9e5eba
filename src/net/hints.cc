#include "net/hints.h"

#define MSGPACK_NO_BOOST
#include <msgpack.hpp>

namespace kv::net {

namespace {

constexpr uint64_t kHintsVersion = 1;

// Unpacks a small peer frame: tight limits bound what a hostile one costs.
Status UnpackSmall(std::string_view bytes, msgpack::object_handle* oh) {
  const msgpack::unpack_limit limits(/*array=*/1 << 20, /*map=*/0, /*str=*/1024, /*bin=*/0,
                                     /*ext=*/0, /*depth=*/3);
  try {
    size_t offset = 0;
    *oh = msgpack::unpack(bytes.data(), bytes.size(), offset, nullptr, nullptr, limits);
    if (offset != bytes.size()) return Status::InvalidArgument("peer frame: trailing bytes");
  } catch (const std::exception& e) {
    return Status::InvalidArgument(std::string("peer frame: not msgpack: ") + e.what());
  }
  return Status::OK();
}

bool IsUint(const msgpack::object& o) { return o.type == msgpack::type::POSITIVE_INTEGER; }

// True for [kHintsVersion, kind, ...] with `size` elements.
bool IsFrame(const msgpack::object& o, uint32_t size, std::string_view kind) {
  return o.type == msgpack::type::ARRAY && o.via.array.size == size &&
         IsUint(o.via.array.ptr[0]) && o.via.array.ptr[0].via.u64 == kHintsVersion &&
         o.via.array.ptr[1].type == msgpack::type::STR &&
         std::string_view(o.via.array.ptr[1].via.str.ptr, o.via.array.ptr[1].via.str.size) == kind;
}

}  // namespace

std::string EncodeLeaderHints(const LeaderHints& hints) {
  msgpack::sbuffer buf;
  msgpack::packer<msgpack::sbuffer> pk(buf);
  pk.pack_array(6);
  pk.pack_uint64(kHintsVersion);
  pk.pack(std::string("leads"));
  pk.pack_uint64(hints.from);
  pk.pack_array(static_cast<uint32_t>(hints.leads.size()));
  for (const auto& [group, term] : hints.leads) {
    pk.pack_array(2);
    pk.pack_uint64(group);
    pk.pack_uint64(term);
  }
  pk.pack_uint64(hints.map_version);
  pk.pack_array(static_cast<uint32_t>(hints.members.size()));
  for (const auto& [node, address] : hints.members) {
    pk.pack_array(2);
    pk.pack_uint64(node);
    pk.pack(address);
  }
  return std::string(buf.data(), buf.size());
}

Status DecodeLeaderHints(std::string_view bytes, LeaderHints* hints) {
  *hints = LeaderHints{};
  msgpack::object_handle oh;
  Status s = UnpackSmall(bytes, &oh);
  if (!s.ok()) return s;
  const msgpack::object& o = oh.get();
  if (!IsFrame(o, 6, "leads")) return Status::InvalidArgument("not a leader hints frame");
  const msgpack::object* f = o.via.array.ptr;
  if (!IsUint(f[2]) || f[3].type != msgpack::type::ARRAY || !IsUint(f[4]) ||
      f[5].type != msgpack::type::ARRAY) {
    return Status::InvalidArgument("leader hints: malformed");
  }
  hints->from = f[2].via.u64;
  for (uint32_t i = 0; i < f[3].via.array.size; ++i) {
    const msgpack::object& item = f[3].via.array.ptr[i];
    if (item.type != msgpack::type::ARRAY || item.via.array.size != 2 ||
        !IsUint(item.via.array.ptr[0]) || !IsUint(item.via.array.ptr[1])) {
      return Status::InvalidArgument("leader hints: malformed entry");
    }
    hints->leads.emplace_back(item.via.array.ptr[0].via.u64, item.via.array.ptr[1].via.u64);
  }
  hints->map_version = f[4].via.u64;
  for (uint32_t i = 0; i < f[5].via.array.size; ++i) {
    const msgpack::object& item = f[5].via.array.ptr[i];
    if (item.type != msgpack::type::ARRAY || item.via.array.size != 2 ||
        !IsUint(item.via.array.ptr[0]) || item.via.array.ptr[1].type != msgpack::type::STR) {
      return Status::InvalidArgument("leader hints: malformed member");
    }
    const msgpack::object& address = item.via.array.ptr[1];
    hints->members.emplace_back(item.via.array.ptr[0].via.u64,
                                std::string(address.via.str.ptr, address.via.str.size));
  }
  return Status::OK();
}

std::string EncodeRemovedNotice(const RemovedNotice& notice) {
  msgpack::sbuffer buf;
  msgpack::packer<msgpack::sbuffer> pk(buf);
  pk.pack_array(4);
  pk.pack_uint64(kHintsVersion);
  pk.pack(std::string("removed"));
  pk.pack_uint64(notice.from);
  pk.pack_uint64(notice.group);
  return std::string(buf.data(), buf.size());
}

Status DecodeRemovedNotice(std::string_view bytes, RemovedNotice* notice) {
  msgpack::object_handle oh;
  Status s = UnpackSmall(bytes, &oh);
  if (!s.ok()) return s;
  const msgpack::object& o = oh.get();
  if (!IsFrame(o, 4, "removed") || !IsUint(o.via.array.ptr[2]) || !IsUint(o.via.array.ptr[3])) {
    return Status::InvalidArgument("not a removed notice");
  }
  notice->from = o.via.array.ptr[2].via.u64;
  notice->group = o.via.array.ptr[3].via.u64;
  return Status::OK();
}

}  // namespace kv::net
