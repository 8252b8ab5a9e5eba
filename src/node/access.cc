#include "node/access.h"

#include <fstream>
#include <sstream>

#include "common/logging.h"
#include "net/curve_keys.h"
#include "net/peer_transport.h"

namespace kv::node {

namespace {

constexpr std::string_view kPeerUserPrefix = "peer:";

bool ParseRole(const std::string& text, Role* role) {
  if (text == "read") {
    *role = Role::kRead;
  } else if (text == "write") {
    *role = Role::kWrite;
  } else if (text == "admin") {
    *role = Role::kAdmin;
  } else {
    return false;
  }
  return true;
}

}  // namespace

const char* RoleName(Role role) {
  switch (role) {
    case Role::kRead:
      return "read";
    case Role::kWrite:
      return "write";
    case Role::kAdmin:
      return "admin";
    case Role::kNone:
      break;
  }
  return "none";
}

Role RoleNeeded(net::ClientOp op) {
  switch (op) {
    case net::ClientOp::kGet:
    case net::ClientOp::kScan:
    case net::ClientOp::kStatus:
    case net::ClientOp::kShards:
    case net::ClientOp::kWatch:
    case net::ClientOp::kCancel:
      return Role::kRead;
    case net::ClientOp::kPut:
    case net::ClientOp::kDelete:
    case net::ClientOp::kCas:
    case net::ClientOp::kTouch:
    // A txn goes through the log even when it only reads.
    case net::ClientOp::kTxn:
      return Role::kWrite;
    case net::ClientOp::kTransferLeader:
    case net::ClientOp::kMemberAdd:
    case net::ClientOp::kMemberRemove:
    // A backup reads every key, and holds a copy of the shard's state on the
    // node until it is read or given up: an operator's tool.
    case net::ClientOp::kBackup:
      return Role::kAdmin;
  }
  return Role::kAdmin;
}

Status ParseClientKeys(const std::string& text, ClientKeys* keys) {
  keys->clear();
  std::stringstream lines(text);
  std::string line;
  for (int n = 1; std::getline(lines, line); ++n) {
    std::stringstream words(line);
    std::string role_text, key, name, extra;
    if (!(words >> role_text) || role_text[0] == '#') continue;
    ClientKey entry;
    if (!(words >> key) || !ParseRole(role_text, &entry.role) || !net::IsZ85Key(key) ||
        ((words >> name) && (words >> extra))) {
      return Status::InvalidArgument("client keys line " + std::to_string(n) +
                                     ": want \"ROLE PUBLIC-KEY [name]\" (ROLE read, write or "
                                     "admin; a 40-character Z85 key; a name without spaces)");
    }
    entry.name = name;
    if (!keys->emplace(key, entry).second) {
      return Status::InvalidArgument("client keys line " + std::to_string(n) + ": key " + key +
                                     " appears twice");
    }
  }
  return Status::OK();
}

Status Access::Load() {
  const std::string& path = ctx_->cfg.client_keys_file;
  if (path.empty()) return Status::OK();
  std::ifstream in(path);
  if (!in) return Status::InvalidArgument("cannot read --client-keys file " + path);
  std::stringstream text;
  text << in.rdbuf();
  ClientKeys keys;
  Status s = ParseClientKeys(text.str(), &keys);
  if (!s.ok()) return Status::InvalidArgument(path + ": " + s.message());
  client_keys_ = std::move(keys);
  return Status::OK();
}

void Access::Reload() {
  if (ctx_->cfg.client_keys_file.empty()) {
    KV_LOG(kInfo) << "reload: no --client-keys file to read";
    return;
  }
  const ClientKeys before = client_keys_;
  Status s = Load();
  if (!s.ok()) {
    KV_LOG(kError) << "reload: " << s.message() << "; keeping the " << before.size()
                   << " client keys loaded before";
    return;
  }
  size_t added = 0, removed = 0, changed = 0;
  for (const auto& [key, entry] : client_keys_) {
    auto it = before.find(key);
    if (it == before.end()) {
      ++added;
    } else if (it->second.role != entry.role) {
      ++changed;
    }
  }
  for (const auto& entry : before) removed += client_keys_.count(entry.first) == 0 ? 1 : 0;
  KV_LOG(kInfo) << "reloaded " << ctx_->cfg.client_keys_file << ": " << client_keys_.size()
                << " client keys (" << added << " added, " << removed << " removed, " << changed
                << " with another role)";
}

bool Access::IsMemberKey(std::string_view key) const {
  for (const auto& entry : ctx_->member_keys) {
    if (entry.second == key) return true;
  }
  return false;
}

std::optional<std::string> Access::Authorize(std::string_view domain,
                                             const std::string& key) const {
  if (domain == net::PeerTransport::kZapDomain) {
    for (const auto& [node, member_key] : ctx_->member_keys) {
      if (member_key == key && node != ctx_->cfg.id) {
        return std::string(kPeerUserPrefix) + std::to_string(node);
      }
    }
    return std::nullopt;
  }
  if (domain == kClientDomain || domain == kEventsDomain) {
    // The key itself is the user id: RoleOf looks its role up per request.
    if (client_keys_.count(key) != 0 || IsMemberKey(key)) return key;
  }
  return std::nullopt;
}

Role Access::RoleOf(std::string_view user) const {
  if (!ctx_->cfg.curve()) return Role::kAdmin;
  auto it = client_keys_.find(user);
  if (it != client_keys_.end()) return it->second.role;
  return IsMemberKey(user) ? Role::kRead : Role::kNone;
}

}  // namespace kv::node
