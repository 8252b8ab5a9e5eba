// CredentialFlags: the --key and --server-keys options of every tool that
// talks to a cluster (kvctl, kvload, kvmon), for clusters whose nodes were
// started with --key (README, "Security").
#pragma once

#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>

#include "kvstore/credentials.h"

namespace kv::tools {

struct CredentialFlags {
  std::string key_file;
  std::string server_keys_file;

  void AddTo(CLI::App& app) {
    app.add_option("--key", key_file,
                   "This client's secret key file (NAME.key, from kvctl keygen), for a cluster "
                   "started with --key: every connection then uses CurveZMQ (env KVSTORE_KEY)");
    app.add_option("--server-keys", server_keys_file,
                   "The members' public keys, a line \"ID PUBLIC-KEY [HOST:PORT]\" each, as a "
                   "node's --peer-keys; others are learned from the cluster "
                   "(env KVSTORE_SERVER_KEYS)");
  }

  // Reads the files (or those the environment names); on an error prints
  // "TOOL: why" and returns false (a usage error: exit 2).
  bool Load(const char* tool, client::Credentials* credentials) const {
    std::string error;
    if (client::LoadCredentials(key_file, server_keys_file, credentials, &error)) return true;
    std::fprintf(stderr, "%s: %s\n", tool, error.c_str());
    return false;
  }
};

}  // namespace kv::tools
