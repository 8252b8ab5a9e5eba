// kvctl: the kvstore command-line client.
//
//   kvctl put KEY VALUE | get KEY | del KEY | cas KEY EXPECTED NEW | txn < FILE | status
//   kvctl members | shards | shard KEY | leader transfer ID | member add|remove ... | watch
//   kvctl snapshot save FILE | snapshot status FILE
//   kvctl keygen NAME
//
// A secure cluster: --key NAME.key --server-keys FILE (or KVSTORE_KEY and
// KVSTORE_SERVER_KEYS) make every connection a CurveZMQ one
// (kvstore/credentials.h).
//
// Exit codes: 0 success; 1 key not found (get, del) or compare failed (cas;
// txn: its else branch ran) or a watch's COMPACTED;
// 2 usage error (a bad key file too); 3 cluster unavailable, timeout, or a
// write whose fate is unknown; 4 the server answered ERROR; 5 DENIED: the
// client's key lacks the role the command needs.
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <iostream>
#include <iterator>
#include <optional>
#include <set>
#include <sstream>

#include "credential_flags.h"
#include "kvstore/backup.h"
#include "kvstore/client.h"
#include "kvstore/credentials.h"
#include "kvstore/keys.h"
#include "kvstore/watch.h"
#include "txn_text.h"

namespace {

std::string Hex(const std::string& bytes) {
  static const char* kDigits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out;
}

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20 || c >= 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  return out + "\"";
}

int ExitCodeFor(kv::client::Code code) {
  switch (code) {
    case kv::client::Code::kOk:
      return 0;
    case kv::client::Code::kNotFound:
    case kv::client::Code::kCasFailed:
    case kv::client::Code::kCompacted:
      return 1;
    case kv::client::Code::kUnavailable:
    case kv::client::Code::kUnknown:
      return 3;
    case kv::client::Code::kError:
      return 4;
    case kv::client::Code::kDenied:
      return 5;
  }
  return 4;
}

struct Output {
  bool json = false;
  bool hex = false;
  std::string public_key;  // this client's, for a DENIED hint; "" plain
};

// Prints the outcome of a key operation and returns the exit code.
int Report(const Output& out, const kv::client::Result& r, bool has_value) {
  if (out.json) {
    std::cout << "{\"status\":\"" << kv::client::CodeName(r.code) << "\"";
    if (has_value && r.ok()) std::cout << ",\"value\":" << JsonString(r.value);
    if (r.index != 0) std::cout << ",\"index\":" << r.index;
    if (r.mod_index != 0) {
      std::cout << ",\"create_index\":" << r.create_index << ",\"mod_index\":" << r.mod_index;
    }
    if (r.ttl_ms != 0) std::cout << ",\"ttl_ms\":" << r.ttl_ms;
    if (!r.error.empty()) std::cout << ",\"error\":" << JsonString(r.error);
    std::cout << "}\n";
  } else if (r.ok()) {
    if (has_value) {
      const std::string v = out.hex ? Hex(r.value) : r.value;
      std::fwrite(v.data(), 1, v.size(), stdout);
      if (out.hex || isatty(STDOUT_FILENO)) std::fputc('\n', stdout);
    } else {
      std::puts("OK");
    }
  } else {
    std::fprintf(stderr, "kvctl: %s%s%s\n", kv::client::CodeName(r.code),
                 r.error.empty() ? "" : ": ", r.error.c_str());
    if (r.code == kv::client::Code::kDenied && !out.public_key.empty()) {
      // What an operator needs to grant it: the key as --client-keys lists it.
      std::fprintf(stderr, "kvctl: this client's public key is %s\n", out.public_key.c_str());
    }
  }
  return ExitCodeFor(r.code);
}

// A scan's keys: with --json one object; else, as etcdctl prints them, each
// key on a line and its value on the next (keys only: the keys). Exit 1
// when no key matched.
int ReportScan(const Output& out, const kv::client::ScanResult& r, bool keys_only) {
  if (!r.ok()) {
    kv::client::Result failed{r.code, {}, r.error};
    return Report(out, failed, false);
  }
  const auto text = [&](const std::string& s) { return out.hex ? Hex(s) : s; };
  if (out.json) {
    std::cout << "{\"status\":\"OK\",\"kvs\":[";
    for (size_t i = 0; i < r.kvs.size(); ++i) {
      const kv::client::KeyValue& kv = r.kvs[i];
      std::cout << (i ? "," : "") << "{\"key\":" << JsonString(text(kv.key));
      if (!keys_only) std::cout << ",\"value\":" << JsonString(text(kv.value));
      std::cout << ",\"mod_index\":" << kv.mod_index;
      if (kv.ttl_ms != 0) std::cout << ",\"ttl_ms\":" << kv.ttl_ms;
      std::cout << "}";
    }
    std::cout << "],\"more\":" << (r.more ? "true" : "false") << "}\n";
  } else {
    for (const kv::client::KeyValue& kv : r.kvs) {
      std::cout << text(kv.key) << '\n';
      if (!keys_only) std::cout << text(kv.value) << '\n';
    }
    if (r.more) std::fprintf(stderr, "kvctl: more keys follow (raise --limit)\n");
  }
  return r.kvs.empty() ? 1 : 0;
}

// `kvctl ttl`: the ms a key has left, or "permanent"; exit 1 when absent.
int ReportTtl(const Output& out, const kv::client::Result& r) {
  if (!r.ok()) return Report(out, r, false);
  if (out.json) {
    std::cout << "{\"status\":\"OK\",\"ttl_ms\":"
              << (r.ttl_ms != 0 ? std::to_string(r.ttl_ms) : "null") << "}\n";
  } else if (r.ttl_ms != 0) {
    std::cout << r.ttl_ms << "\n";
  } else {
    std::cout << "permanent\n";
  }
  return 0;
}

// `kvctl txn`: the branch that ran and each of its ops' results; exit 0
// when it was the then branch, 1 the else branch.
int ReportTxn(const Output& out, const kv::client::Transaction& txn,
              const kv::client::TxnResult& r) {
  if (!r.ok()) return Report(out, kv::client::Result{r.code, {}, r.error}, false);
  const std::vector<kv::client::TxnOp>& ops = r.succeeded ? txn.success : txn.failure;
  static const char* const kOpNames[] = {"put", "del", "get"};  // by TxnOp::Kind
  const auto text = [&](const std::string& s) { return out.hex ? Hex(s) : s; };
  if (out.json) {
    std::cout << "{\"status\":\"OK\",\"succeeded\":" << (r.succeeded ? "true" : "false")
              << ",\"index\":" << r.index << ",\"resent\":" << (r.resent ? "true" : "false")
              << ",\"results\":[";
  } else {
    std::cout << (r.succeeded ? "SUCCEEDED" : "FAILED") << " (index " << r.index << ")\n";
  }
  for (size_t i = 0; i < r.results.size() && i < ops.size(); ++i) {
    const kv::client::Result& result = r.results[i];
    const char* op = kOpNames[ops[i].kind];
    const bool read = ops[i].kind == kv::client::TxnOp::kGet && result.ok();
    if (out.json) {
      std::cout << (i ? "," : "") << "{\"op\":\"" << op
                << "\",\"key\":" << JsonString(text(ops[i].key)) << ",\"status\":\""
                << kv::client::CodeName(result.code) << "\"";
      if (read) {
        std::cout << ",\"value\":" << JsonString(text(result.value))
                  << ",\"create_index\":" << result.create_index
                  << ",\"mod_index\":" << result.mod_index;
        if (result.ttl_ms != 0) std::cout << ",\"ttl_ms\":" << result.ttl_ms;
      }
      if (!result.error.empty()) std::cout << ",\"error\":" << JsonString(result.error);
      std::cout << "}";
      continue;
    }
    const auto token = [&](const std::string& s) {
      return out.hex ? Hex(s) : kv::tools::QuoteToken(s);
    };
    std::cout << op << " " << token(ops[i].key) << " ";
    if (read) {
      std::cout << "= " << token(result.value) << " (mod_index " << result.mod_index;
      if (result.ttl_ms != 0) std::cout << ", ttl_ms " << result.ttl_ms;
      std::cout << ")\n";
    } else {
      std::cout << kv::client::CodeName(result.code)
                << (result.error.empty() ? "" : ": " + result.error) << "\n";
    }
  }
  if (out.json) std::cout << "]}\n";
  if (r.resent) {
    std::fprintf(stderr,
                 "kvctl: the cluster had applied this txn before (a resend): its "
                 "results are not kept\n");
  }
  return r.succeeded ? 0 : 1;
}

std::string IdList(const std::vector<uint64_t>& ids, const char* sep) {
  std::string out;
  for (uint64_t id : ids) out += (out.empty() ? "" : sep) + std::to_string(id);
  return out;
}

// A sharded node's groups, as rows under its status row.
void PrintGroups(const kv::NodeStatus& s) {
  std::printf("  %-5s %6s %-13s %6s %6s %10s %10s %10s\n", "SHARD", "GROUP", "ROLE", "TERM",
              "LEADER", "COMMIT", "APPLIED", "KEYS");
  for (const kv::GroupStatus& g : s.groups) {
    const std::string shard = g.shard < 0 ? "meta" : std::to_string(g.shard);
    std::printf("  %-5s %6llu %-13s %6llu %6llu %10llu %10llu %10llu\n", shard.c_str(),
                static_cast<unsigned long long>(g.group), g.role.c_str(),
                static_cast<unsigned long long>(g.term), static_cast<unsigned long long>(g.leader),
                static_cast<unsigned long long>(g.commit),
                static_cast<unsigned long long>(g.applied),
                static_cast<unsigned long long>(g.keys));
  }
}

void PrintGroupsJson(const kv::NodeStatus& s) {
  std::cout << ",\"shards\":" << s.shards << ",\"groups\":[";
  for (size_t i = 0; i < s.groups.size(); ++i) {
    const kv::GroupStatus& g = s.groups[i];
    std::cout << (i ? "," : "") << "{\"group\":" << g.group
              << ",\"shard\":" << (g.shard < 0 ? "null" : std::to_string(g.shard))
              << ",\"role\":" << JsonString(g.role) << ",\"term\":" << g.term
              << ",\"leader\":" << g.leader << ",\"commit\":" << g.commit
              << ",\"applied\":" << g.applied << ",\"last_index\":" << g.last_index
              << ",\"snapshot_index\":" << g.snapshot_index << ",\"keys\":" << g.keys
              << ",\"digest\":" << g.digest << ",\"voters\":[" << IdList(g.voters, ",")
              << "],\"learners\":[" << IdList(g.learners, ",") << "]}";
  }
  std::cout << "]";
}

// Each endpoint's status. A secure client may learn a node's key from
// another's status (it lists every member's): an endpoint skipped for want of
// its key is asked again once the key is known.
std::vector<kv::client::NodeReport> StatusOfAll(kv::client::Client& client,
                                                const std::vector<std::string>& endpoints) {
  std::vector<kv::client::NodeReport> reports;
  std::vector<bool> had_key;
  for (const std::string& ep : endpoints) {
    had_key.push_back(client.server_keys().count(ep) > 0);
    reports.push_back(client.Status(ep));
  }
  for (size_t i = 0; i < endpoints.size(); ++i) {
    if (!reports[i].reachable && !had_key[i] && client.server_keys().count(endpoints[i]) > 0) {
      reports[i] = client.Status(endpoints[i]);
    }
  }
  return reports;
}

int PrintStatus(const Output& out, kv::client::Client& client,
                const std::vector<std::string>& endpoints) {
  bool any = false;
  std::vector<std::string> errors;  // why each unreachable one is
  const std::vector<kv::client::NodeReport> reports = StatusOfAll(client, endpoints);
  if (!out.json) {
    std::printf("%-21s %4s %-13s %6s %6s %10s %10s %10s %10s %s\n", "ENDPOINT", "ID", "ROLE",
                "TERM", "LEADER", "COMMIT", "APPLIED", "LAST", "SNAPSHOT", "STATE");
  } else {
    std::cout << "[";
  }
  for (size_t i = 0; i < reports.size(); ++i) {
    const kv::client::NodeReport& rep = reports[i];
    const kv::NodeStatus& s = rep.status;
    any = any || rep.reachable;
    if (out.json) {
      std::cout << (i ? "," : "") << "{\"endpoint\":" << JsonString(rep.endpoint)
                << ",\"reachable\":" << (rep.reachable ? "true" : "false");
      if (!rep.reachable) std::cout << ",\"error\":" << JsonString(rep.error);
      if (rep.reachable) {
        std::cout << ",\"id\":" << s.node << ",\"role\":" << JsonString(s.role)
                  << ",\"term\":" << s.term << ",\"leader\":" << s.leader
                  << ",\"commit\":" << s.commit << ",\"applied\":" << s.applied
                  << ",\"last_index\":" << s.last_index
                  << ",\"snapshot_index\":" << s.snapshot_index << ",\"keys\":" << s.keys
                  << ",\"digest\":" << s.digest;
        if (!s.groups.empty()) PrintGroupsJson(s);
      }
      std::cout << "}";
    } else if (rep.reachable) {
      std::printf(
          "%-21s %4llu %-13s %6llu %6llu %10llu %10llu %10llu %10llu %s\n", rep.endpoint.c_str(),
          static_cast<unsigned long long>(s.node), s.role.c_str(),
          static_cast<unsigned long long>(s.term), static_cast<unsigned long long>(s.leader),
          static_cast<unsigned long long>(s.commit), static_cast<unsigned long long>(s.applied),
          static_cast<unsigned long long>(s.last_index),
          static_cast<unsigned long long>(s.snapshot_index), "up");
      if (!s.groups.empty()) PrintGroups(s);
    } else {
      std::printf("%-21s %4s %-13s %6s %6s %10s %10s %10s %10s %s\n", rep.endpoint.c_str(), "-",
                  "-", "-", "-", "-", "-", "-", "-", "unreachable");
      errors.push_back(rep.error);
    }
  }
  if (out.json) std::cout << "]\n";
  for (const std::string& error : errors) std::fprintf(stderr, "kvctl: %s\n", error.c_str());
  return any ? 0 : 3;
}

// The first endpoint that answers a status request, or nullopt after
// printing why none did.
std::optional<kv::client::NodeReport> FirstReachable(kv::client::Client& client,
                                                     const std::vector<std::string>& endpoints) {
  std::string why;
  for (const auto& ep : endpoints) {
    kv::client::NodeReport rep = client.Status(ep);
    if (rep.reachable) return rep;
    why += "; " + rep.error;
  }
  std::fprintf(stderr, "kvctl: UNAVAILABLE: no endpoint answered%s\n", why.c_str());
  return std::nullopt;
}

int PrintMembers(const Output& out, kv::client::Client& client,
                 const std::vector<std::string>& endpoints) {
  auto rep = FirstReachable(client, endpoints);
  if (!rep) return 3;
  const kv::NodeStatus& s = rep->status;
  auto kind = [&](uint64_t id) {
    if (std::find(s.voters.begin(), s.voters.end(), id) != s.voters.end()) return "voter";
    if (std::find(s.learners.begin(), s.learners.end(), id) != s.learners.end()) return "learner";
    return "configured";
  };
  if (out.json) std::cout << "[";
  bool first = true;
  for (const auto& [id, addr] : s.members) {
    if (out.json) {
      const auto key = s.member_keys.find(id);
      std::cout << (first ? "" : ",") << "{\"id\":" << id << ",\"address\":" << JsonString(addr)
                << ",\"kind\":\"" << kind(id)
                << "\",\"leader\":" << (id == s.leader ? "true" : "false");
      if (key != s.member_keys.end()) std::cout << ",\"public_key\":" << JsonString(key->second);
      std::cout << "}";
    } else {
      std::printf("%llu %s %s%s\n", static_cast<unsigned long long>(id), addr.c_str(), kind(id),
                  id == s.leader ? " leader" : "");
    }
    first = false;
  }
  if (out.json) std::cout << "]\n";
  return 0;
}

int PrintShards(const Output& out, kv::client::Client& client) {
  kv::ShardMap map;
  const kv::client::Result r = client.Shards(&map);
  if (!r.ok()) return Report(out, r, false);
  if (out.json) {
    std::cout << "{\"version\":" << map.version << ",\"shards\":" << map.shards
              << ",\"replicas\":" << map.replicas << ",\"placement\":" << map.placement
              << ",\"members\":{";
    bool first = true;
    for (const auto& [id, addr] : map.members) {
      std::cout << (first ? "" : ",") << "\"" << id << "\":" << JsonString(addr);
      first = false;
    }
    std::cout << "},\"map\":[";
    for (size_t i = 0; i < map.list.size(); ++i) {
      const kv::ShardInfo& info = map.list[i];
      std::cout << (i ? "," : "") << "{\"shard\":" << info.shard << ",\"group\":" << info.group
                << ",\"replicas\":[" << IdList(info.replicas, ",") << "],\"leader\":" << info.leader
                << ",\"leader_address\":" << JsonString(info.leader_address) << "}";
    }
    std::cout << "]}\n";
    return 0;
  }
  std::printf("version %llu  shards %u  replicas %u", static_cast<unsigned long long>(map.version),
              map.shards, map.replicas);
  if (map.shards == 0) {
    std::printf("\nnot sharded: one Raft group holds every key\n");
    return 0;
  }
  std::printf("  placement rule %u\n", map.placement == 0 ? 1 : map.placement);
  std::printf("%5s %6s %-20s %s\n", "SHARD", "GROUP", "REPLICAS", "LEADER");
  for (const kv::ShardInfo& info : map.list) {
    const std::string leader =
        info.leader == 0 ? "-"
                         : std::to_string(info.leader) +
                               (info.leader_address.empty() ? "" : " " + info.leader_address);
    std::printf("%5u %6llu %-20s %s\n", info.shard, static_cast<unsigned long long>(info.group),
                IdList(info.replicas, ",").c_str(), leader.c_str());
  }
  return 0;
}

int TransferLeader(const Output& out, kv::client::Client& client,
                   const std::vector<std::string>& endpoints, uint64_t target,
                   std::chrono::milliseconds timeout) {
  kv::client::Result r = client.TransferLeader(target);
  if (!r.ok()) return Report(out, r, false);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    for (const auto& ep : endpoints) {
      kv::client::NodeReport rep = client.Status(ep);
      if (rep.reachable && rep.status.node == target && rep.status.role == "leader") {
        return Report(out, kv::client::Result{}, false);
      }
    }
  }
  return Report(out,
                kv::client::Result{kv::client::Code::kUnavailable,
                                   {},
                                   "node " + std::to_string(target) + " did not become leader"},
                false);
}

volatile sig_atomic_t g_interrupted = 0;

// --from: INDEX (an unsharded cluster's), or SHARD=INDEX,... (each shard's
// log has indexes of its own). False if malformed.
bool ParseWatchFrom(const std::string& text, std::map<uint32_t, uint64_t>* from, bool* by_shard) {
  *by_shard = text.find('=') != std::string::npos;
  std::stringstream list(text);
  std::string item;
  while (std::getline(list, item, ',')) {
    const size_t eq = item.find('=');
    char* end = nullptr;
    uint64_t shard = 0;
    if (*by_shard) {
      shard = std::strtoull(item.c_str(), &end, 10);
      if (eq == 0 || end != item.c_str() + eq) return false;
    }
    const char* index = item.c_str() + (*by_shard ? eq + 1 : 0);
    const uint64_t value = std::strtoull(index, &end, 10);
    if (*index == '\0' || *end != '\0' || shard > UINT32_MAX) return false;
    (*from)[static_cast<uint32_t>(shard)] = value;
  }
  return !from->empty();
}

void PrintWatchEvent(const Output& out, bool sharded, bool keys_only,
                     const kv::client::WatchEvent& e) {
  static const char* kNames[] = {"put", "del", "expire"};
  const char* op = kNames[e.type];
  const bool put = e.type == kv::client::WatchEvent::kPut;
  if (out.json) {
    std::cout << "{\"op\":\"" << op << "\",\"key\":" << JsonString(e.key);
    if (put && !keys_only) {
      std::cout << ",\"value\":" << JsonString(e.value) << ",\"size\":" << e.value.size();
    }
    std::cout << ",\"index\":" << e.index;
    if (put) std::cout << ",\"create_index\":" << e.create_index;
    if (sharded) std::cout << ",\"shard\":" << e.shard;
    std::cout << "}" << std::endl;
    return;
  }
  std::string upper(op);
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  std::cout << upper << " " << e.key << " (";
  if (sharded) std::cout << "shard " << e.shard << ", ";
  std::cout << "index " << e.index;
  if (put && !keys_only) std::cout << ", " << e.value.size() << " bytes";
  std::cout << ")" << std::endl;
}

// Prints every change to the keys under `prefix` from `from` on (or from
// now), until Ctrl-C or `count` changes, and a line on stderr whenever a
// stream moves to another node.
int Watch(const Output& out, kv::client::Client& client, const std::string& prefix,
          const std::string& from, bool keys_only, size_t count) {
  kv::client::WatchOptions options = kv::client::PrefixWatch(prefix);
  options.keys_only = keys_only;
  bool by_shard = false;
  if (!from.empty() && !ParseWatchFrom(from, &options.from_index, &by_shard)) {
    std::fprintf(stderr, "kvctl: watch: --from takes INDEX, or SHARD=INDEX,... when sharded\n");
    return 2;
  }
  if (!from.empty() && !by_shard) {
    kv::ShardMap map;
    if (kv::client::Result r = client.Shards(&map); !r.ok()) return Report(out, r, false);
    if (map.shards > 0) {
      std::fprintf(stderr,
                   "kvctl: watch: the cluster has %u shards, each with indexes of its own: "
                   "give --from SHARD=INDEX,...\n",
                   map.shards);
      return 2;
    }
  }
  // The streams' first nodes go in the banner; later moves on a line each.
  bool started = false, sharded = false;
  std::map<uint32_t, std::string> serving;
  options.on_move = [&](const kv::client::WatchMove& m) {
    if (!started) {
      serving[m.shard] = m.endpoint;
      return;
    }
    const std::string shard = sharded ? "shard " + std::to_string(m.shard) + " " : "";
    std::fprintf(stderr, "watch: %snow served by %s (%s)\n", shard.c_str(), m.endpoint.c_str(),
                 m.why.c_str());
  };
  kv::client::Watcher watcher(client, options);
  started = true;
  sharded = watcher.sharded();
  signal(SIGINT, [](int) { g_interrupted = 1; });
  signal(SIGTERM, [](int) { g_interrupted = 1; });
  if (watcher.status().ok()) {
    std::string what = prefix.empty() ? "every key" : "keys starting with " + JsonString(prefix);
    if (sharded) {
      what += " in " + std::to_string(serving.size()) + " shards";
    } else {
      what += " after index " + std::to_string(watcher.Position()[0]);
    }
    std::set<std::string> nodes;
    for (const auto& [shard, endpoint] : serving) nodes.insert(endpoint);
    std::string by;
    for (const std::string& n : nodes) by += (by.empty() ? "" : ", ") + n;
    std::fprintf(stderr, "kvctl: watching %s, served by %s; Ctrl-C stops\n", what.c_str(),
                 by.c_str());
  }
  size_t seen = 0;
  while (!g_interrupted && (count == 0 || seen < count)) {
    if (std::optional<kv::client::WatchEvent> e = watcher.Next(std::chrono::milliseconds(200))) {
      PrintWatchEvent(out, sharded, keys_only, *e);
      ++seen;
    } else if (const kv::client::WatchStatus& st = watcher.status(); !st.ok()) {
      const std::string shard = sharded && st.code == kv::client::Code::kCompacted
                                    ? "shard " + std::to_string(st.shard) + ": "
                                    : "";
      return Report(out, kv::client::Result{st.code, {}, shard + st.error}, false);
    }
  }
  return 0;
}

// Seconds since `start`, for humans.
double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

int PrintShardOf(const Output& out, kv::client::Client& client, const std::string& key) {
  kv::ShardMap map;
  const kv::client::Result r = client.Shards(&map);
  if (!r.ok()) return Report(out, r, false);
  const int64_t shard = client.ShardOf(key);
  if (shard < 0) {
    std::cout << (out.json ? "{\"shard\":null}\n" : "unsharded: one group holds every key\n");
    return 0;
  }
  const kv::ShardInfo& info = map.list[static_cast<size_t>(shard)];
  if (out.json) {
    std::cout << "{\"shard\":" << shard << ",\"group\":" << info.group
              << ",\"leader\":" << info.leader
              << ",\"leader_address\":" << JsonString(info.leader_address) << "}\n";
  } else {
    std::cout << "shard " << shard << " (group " << info.group << "), leader "
              << (info.leader == 0 ? std::string("unknown")
                                   : std::to_string(info.leader) + " " + info.leader_address)
              << "\n";
  }
  return 0;
}

int SaveSnapshot(const Output& out, kv::client::Client& client, const std::string& path) {
  const auto start = std::chrono::steady_clock::now();
  kv::client::BackupInfo info;
  const kv::client::Result r =
      kv::client::SaveBackup(client, path, &info, [&](const kv::client::BackupInfo::Part& p) {
        if (!out.json && info.shards > 1) {
          std::fprintf(stderr, "shard %u: %llu keys at index %llu\n", p.shard,
                       static_cast<unsigned long long>(p.keys),
                       static_cast<unsigned long long>(p.index));
        }
      });
  if (!r.ok()) return Report(out, r, false);
  const double seconds = SecondsSince(start);
  if (out.json) {
    std::cout << "{\"status\":\"OK\",\"file\":" << JsonString(path) << ",\"keys\":" << info.keys()
              << ",\"bytes\":" << info.file_bytes << ",\"shards\":" << info.shards
              << ",\"seconds\":" << seconds << "}\n";
  } else {
    std::printf("saved %s: %llu keys, %.1f MiB, %s, in %.2f s\n", path.c_str(),
                static_cast<unsigned long long>(info.keys()), info.file_bytes / 1048576.0,
                info.shards == 0 ? "unsharded" : (std::to_string(info.shards) + " shards").c_str(),
                seconds);
  }
  return 0;
}

int SnapshotStatus(const Output& out, const std::string& path) {
  kv::client::BackupInfo info;
  const kv::client::Result r = kv::client::ReadBackupInfo(path, &info);
  if (!r.ok()) {
    // The header of a file whose checksum fails is not to be trusted: say
    // only that.
    if (out.json) {
      std::cout << "{\"file\":" << JsonString(path)
                << ",\"checksum_ok\":false,\"error\":" << JsonString(r.error) << "}\n";
    } else {
      std::printf("file      %s\nchecksum  BAD: %s\n", path.c_str(), r.error.c_str());
    }
    return 1;
  }
  const std::time_t created = static_cast<std::time_t>(info.created_ms / 1000);
  char when[32];
  std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&created));
  if (out.json) {
    std::cout << "{\"file\":" << JsonString(path)
              << ",\"checksum_ok\":true,\"cluster\":" << JsonString(info.cluster)
              << ",\"created_ms\":" << info.created_ms << ",\"shards\":" << info.shards
              << ",\"replicas\":" << info.replicas << ",\"keys\":" << info.keys()
              << ",\"bytes\":" << info.file_bytes << ",\"parts\":[";
    for (size_t i = 0; i < info.parts.size(); ++i) {
      const auto& p = info.parts[i];
      std::cout << (i ? "," : "") << "{\"shard\":" << p.shard << ",\"index\":" << p.index
                << ",\"keys\":" << p.keys << ",\"bytes\":" << p.bytes << "}";
    }
    std::cout << "]}\n";
    return 0;
  }
  std::printf("file      %s\ncluster   %s\ncreated   %s\n", path.c_str(), info.cluster.c_str(),
              when);
  if (info.shards == 0) {
    std::printf("shards    unsharded\n");
  } else {
    std::printf("shards    %u (replicas %u)\n", info.shards, info.replicas);
  }
  std::printf("keys      %llu\nsize      %.1f MiB (%llu bytes)\nchecksum  OK\n",
              static_cast<unsigned long long>(info.keys()), info.file_bytes / 1048576.0,
              static_cast<unsigned long long>(info.file_bytes));
  std::printf("%-6s %12s %10s %12s\n", "SHARD", "INDEX", "KEYS", "BYTES");
  for (const auto& p : info.parts) {
    std::printf("%-6u %12llu %10llu %12llu\n", p.shard, static_cast<unsigned long long>(p.index),
                static_cast<unsigned long long>(p.keys), static_cast<unsigned long long>(p.bytes));
  }
  return 0;
}

// The public key --pub names: the Z85 text itself, or a file holding it
// (NAME.pub). False, with *error, for anything else, and for a secret key
// file (NAME.key), which must never travel.
bool ReadPublicKeyArgument(const std::string& arg, std::string* key, std::string* error) {
  if (arg.size() >= 4 && arg.compare(arg.size() - 4, 4, ".key") == 0) {
    *error = "--pub " + arg + " looks like a secret key file: give the public one (NAME.pub)";
    return false;
  }
  if (kv::client::IsZ85Key(arg) && access(arg.c_str(), F_OK) != 0) {
    *key = arg;
    return true;
  }
  if (!kv::client::ReadKeyFile(arg, key, error)) {
    *error = "--pub: " + *error + " (give NAME.pub or the public key's Z85 text)";
    return false;
  }
  return true;
}

// Writes NAME.key and NAME.pub (kvstore/keys.h); exit 0, or 2 with the reason.
int KeyGen(const Output& out, const std::string& name) {
  kv::client::KeyPair pair;
  std::string error;
  if (!kv::client::GenerateKeyPair(&pair, &error) ||
      !kv::client::WriteKeyFiles(name, pair, &error)) {
    std::fprintf(stderr, "kvctl: keygen: %s\n", error.c_str());
    return 2;
  }
  if (out.json) {
    std::printf("{\"secret_file\": %s, \"public_file\": %s, \"public_key\": %s}\n",
                JsonString(name + ".key").c_str(), JsonString(name + ".pub").c_str(),
                JsonString(pair.public_key).c_str());
  } else {
    std::printf("%s\n", pair.public_key.c_str());
    std::fprintf(stderr, "kvctl: wrote %s.key (the secret key: keep it private) and %s.pub\n",
                 name.c_str(), name.c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "kvctl: command-line client for a kvstore cluster.\n"
      "Exit codes: 0 ok, 1 not found / compare failed (cas; txn: its else branch ran) / no key "
      "in range / COMPACTED (watch), 2 usage, 3 unavailable or timeout, 4 server error, 5 denied "
      "(the --key's role "
      "does not allow it)."};
  app.require_subcommand(1);
  app.fallthrough();  // global flags may follow the subcommand
  const char* env = std::getenv("KVSTORE_ENDPOINTS");
  std::string endpoints = env ? env : kv::client::DefaultEndpoints();
  int timeout_ms = 5000;
  Output out;
  bool stale = false;
  app.add_option("--endpoints", endpoints,
                 "Comma-separated host:port of cluster members (env KVSTORE_ENDPOINTS)")
      ->capture_default_str();
  app.add_option("--timeout", timeout_ms,
                 "Deadline per operation in milliseconds, retries (after BUSY, UNAVAILABLE, no "
                 "answer) included")
      ->capture_default_str();
  app.add_flag("--json", out.json, "Print results as JSON");
  app.add_flag("--hex", out.hex, "Print values as hex");
  kv::tools::CredentialFlags credential_flags;
  credential_flags.AddTo(app);

  std::string key, value, expected;
  bool absent = false;
  int64_t ttl_ms = 0;
  const char* ttl_help = "Expire the key MS milliseconds from now (default: never)";
  auto* put = app.add_subcommand("put", "Set KEY to VALUE");
  put->add_option("key", key)->required();
  put->add_option("value", value)->required();
  put->add_option("--ttl", ttl_ms, ttl_help)->check(CLI::NonNegativeNumber);
  auto* get = app.add_subcommand("get", "Print the value of KEY (linearizable unless --stale)");
  get->add_option("key", key)->required();
  get->add_flag("--stale", stale, "Read from any node without a quorum check");
  bool by_prefix = false, keys_only = false;
  size_t limit = 1000;
  get->add_flag("--prefix", by_prefix,
                "Every key starting with KEY, each on a line and its value on the next");
  std::string scan_start, scan_end;
  auto* scan = app.add_subcommand(
      "scan",
      "Print the keys in [START, END) in key order, each on a line and its value on the next");
  scan->add_option("start", scan_start, "First key (default: the first)");
  scan->add_option("end", scan_end, "The key to stop before (default: the last key)");
  scan->add_flag("--stale", stale, "Read from any node without a quorum check");
  for (CLI::App* cmd : {get, scan}) {
    cmd->add_option("--limit", limit, "At most this many keys")->capture_default_str();
    cmd->add_flag("--keys-only", keys_only, "Print the keys without their values");
  }
  auto* del = app.add_subcommand("del", "Delete KEY");
  del->add_option("key", key)->required();
  auto* cas = app.add_subcommand("cas", "Set KEY to NEW only if it is EXPECTED now");
  cas->add_option("key", key)->required();
  cas->add_option("expected", expected,
                  "Expected current value (omit with --absent or --expect-index)");
  cas->add_option("new", value, "New value");
  cas->add_flag("--absent", absent, "Only if KEY does not exist (then give KEY NEW)");
  uint64_t expect_index = 0;
  auto* expect_index_opt = cas->add_option(
      "--expect-index", expect_index,
      "Only if KEY's mod_index (kvctl --json get) is INDEX, 0 meaning absent (then give KEY NEW)");
  expect_index_opt->excludes("--absent");
  cas->add_option("--ttl", ttl_ms, ttl_help)->check(CLI::NonNegativeNumber);
  auto* touch = app.add_subcommand(
      "touch", "Give KEY a new deadline, keeping its value (without --ttl: make it permanent)");
  touch->add_option("key", key)->required();
  touch->add_option("--ttl", ttl_ms, ttl_help)->check(CLI::NonNegativeNumber);
  auto* ttl = app.add_subcommand(
      "ttl", "Print the milliseconds KEY has left before it expires, or \"permanent\"");
  ttl->add_option("key", key)->required();
  ttl->add_flag("--stale", stale, "Read from any node without a quorum check");
  auto* txn = app.add_subcommand(
      "txn",
      "Run a transaction read from stdin, atomically: its then ops if all its if conditions "
      "hold, else its else ops");
  txn->footer(kv::tools::kTxnTextHelp);
  auto* status = app.add_subcommand("status", "One row per endpoint: role, term, indexes");
  auto* members =
      app.add_subcommand("members", "The group's members: id, address, voter or learner");
  auto* shards = app.add_subcommand(
      "shards",
      "The shard map: version, shards, replicas, and each shard's group, replicas, leader");
  auto* shard_of = app.add_subcommand(
      "shard", "Print the shard KEY belongs to (a key holding {TAG} goes with TAG) and its leader");
  shard_of->add_option("key", key)->required();
  uint64_t target = 0;
  auto* leader = app.add_subcommand("leader", "Leadership commands");
  auto* transfer = leader->add_subcommand("transfer", "Hand leadership to node ID and wait for it");
  transfer->add_option("id", target, "Node id of the new leader")->required();
  leader->require_subcommand(1);
  uint64_t member_id = 0;
  std::string member_address;
  auto* member = app.add_subcommand("member", "Membership commands");
  auto* member_add = member->add_subcommand(
      "add", "Add node ID (started with kvstore --join) and wait until it is a voter");
  member_add->add_option("id", member_id, "Node id")->required();
  member_add->add_option("address", member_address, "Its client address host:port")->required();
  std::string member_pub;
  member_add->add_option("--pub", member_pub,
                         "Secure clusters: the new member's public key, a NAME.pub file or its "
                         "Z85 text; the cluster records it in its configuration");
  auto* member_remove = member->add_subcommand("remove", "Remove node ID (the leader too)");
  member_remove->add_option("id", member_id, "Node id")->required();
  member->require_subcommand(1);
  std::string prefix, watch_from;
  size_t watch_count = 0;
  auto* watch = app.add_subcommand(
      "watch",
      "Print every change to the keys, in log order, each once, until Ctrl-C; moves to another "
      "node when its node dies (saying so on stderr)");
  watch->add_option("prefix", prefix, "Only keys starting with PREFIX");
  watch->add_option("--from", watch_from,
                    "Start at log index INDEX (earlier changes the nodes still keep are printed "
                    "first); a sharded cluster: SHARD=INDEX,... (shards not named: from now)");
  watch->add_option("--count", watch_count, "Stop after N changes");
  watch->add_flag("--keys-only", keys_only, "Leave the values out");
  watch->footer(
      "Each change: PUT KEY (index N, SIZE bytes), DEL KEY (index N) or EXPIRE KEY (index N), "
      "with the shard in a sharded cluster; --json: {\"op\", \"key\", \"value\", \"size\", "
      "\"index\", \"create_index\", \"shard\"}. Exit 1 (COMPACTED) when the nodes no longer "
      "keep a change the watch needs: watch again without --from, then read the keys (kvctl get "
      "PREFIX --prefix).");
  std::string backup_path;
  auto* snapshot = app.add_subcommand("snapshot", "Backups of the whole cluster");
  auto* snapshot_save = snapshot->add_subcommand(
      "save",
      "Write a backup of every shard, each read at one linearizable point through its leader, "
      "to FILE (kvstore restore makes a new cluster from it)");
  snapshot_save->add_option("file", backup_path, "The backup file to write")->required();
  auto* snapshot_status = snapshot->add_subcommand(
      "status", "Print a backup's header, keys and size, and whether its checksum holds");
  snapshot_status->add_option("file", backup_path, "The backup file")->required();
  snapshot->require_subcommand(1);
  std::string key_name;
  auto* keygen = app.add_subcommand(
      "keygen",
      "Write a new CurveZMQ key pair: NAME.key (secret, mode 0600) and NAME.pub; "
      "print the public key");
  keygen->add_option("name", key_name, "Path and name of the files, without extension")->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  const bool by_index = expect_index_opt->count() > 0;
  if (cas->parsed()) {
    // CLI11 fills positionals in order: with --absent or --expect-index the
    // two given are KEY NEW.
    const bool two = absent || by_index;
    if (two && cas->count("new") == 0 && cas->count("expected") == 1) {
      value = expected;
      expected.clear();
    } else if (cas->count("new") == 0 || (two && cas->count("expected") != 0)) {
      std::fprintf(stderr,
                   "kvctl: cas needs KEY EXPECTED NEW (or --absent KEY NEW, or "
                   "--expect-index INDEX KEY NEW)\n");
      return 2;
    }
  }

  // A txn is read whole before anything is sent: a mistake on any line
  // leaves the cluster untouched.
  kv::client::Transaction transaction;
  if (txn->parsed()) {
    const std::string text{std::istreambuf_iterator<char>(std::cin),
                           std::istreambuf_iterator<char>()};
    std::string error;
    if (!kv::tools::ParseTxnText(text, &transaction, &error)) {
      std::fprintf(stderr, "kvctl: txn: %s\n", error.c_str());
      return 2;
    }
  }

  if (keygen->parsed()) return KeyGen(out, key_name);
  if (snapshot_status->parsed()) return SnapshotStatus(out, backup_path);

  kv::client::Options opts;
  std::string error;
  if (!credential_flags.Load("kvctl", &opts.credentials)) return 2;
  out.public_key = opts.credentials.public_key;
  std::string member_key;
  if (member_add->parsed() && !member_pub.empty() &&
      !ReadPublicKeyArgument(member_pub, &member_key, &error)) {
    std::fprintf(stderr, "kvctl: %s\n", error.c_str());
    return 2;
  }
  opts.endpoints = kv::client::ParseEndpoints(endpoints);
  if (opts.endpoints.empty()) {
    std::fprintf(stderr, "kvctl: --endpoints is empty\n");
    return 2;
  }
  opts.timeout = std::chrono::milliseconds(timeout_ms);
  opts.attempt_timeout = std::min(opts.timeout, std::chrono::milliseconds(1000));
  kv::client::Client client(opts);

  const std::chrono::milliseconds ttl_for_write(ttl_ms);
  if (put->parsed()) return Report(out, client.Put(key, value, ttl_for_write), false);
  if (touch->parsed()) return Report(out, client.Touch(key, ttl_for_write), false);
  if (ttl->parsed()) return ReportTtl(out, client.Get(key, stale));
  if (get->parsed() && by_prefix) {
    kv::client::ScanOptions o = kv::client::PrefixScan(key);
    o.limit = limit;
    o.keys_only = keys_only;
    o.stale = stale;
    return ReportScan(out, client.Scan(o), keys_only);
  }
  if (get->parsed()) return Report(out, client.Get(key, stale), true);
  if (scan->parsed()) {
    kv::client::ScanOptions o;
    o.start = scan_start;
    if (scan->count("end") > 0) o.end = scan_end;
    o.limit = limit;
    o.keys_only = keys_only;
    o.stale = stale;
    return ReportScan(out, client.Scan(o), keys_only);
  }
  if (del->parsed()) return Report(out, client.Delete(key), false);
  if (txn->parsed()) return ReportTxn(out, transaction, client.Txn(transaction));
  if (cas->parsed() && by_index)
    return Report(out, client.CasIndex(key, expect_index, value, ttl_for_write), false);
  if (cas->parsed()) {
    std::optional<std::string> expect;
    if (!absent) expect = expected;
    return Report(out, client.Cas(key, expect, value, ttl_for_write), false);
  }
  if (status->parsed()) return PrintStatus(out, client, opts.endpoints);
  if (members->parsed()) return PrintMembers(out, client, opts.endpoints);
  if (shards->parsed()) return PrintShards(out, client);
  if (shard_of->parsed()) return PrintShardOf(out, client, key);
  if (transfer->parsed()) return TransferLeader(out, client, opts.endpoints, target, opts.timeout);
  if (watch->parsed()) return Watch(out, client, prefix, watch_from, keys_only, watch_count);
  if (member_add->parsed()) {
    return Report(out, client.AddMember(member_id, member_address, member_key), false);
  }
  if (member_remove->parsed()) return Report(out, client.RemoveMember(member_id), false);
  if (snapshot_save->parsed()) return SaveSnapshot(out, client, backup_path);
  return 2;
}
