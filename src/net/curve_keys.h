// CurveZMQ keys (RFC 26 of the ZeroMQ project) and their files: NAME.key
// holds the secret key, NAME.pub the public key, each one line of Z85 text
// (40 characters). These are the functions include/kvstore/keys.h offers
// clients, documented there; nodes use them from here, without the client
// library.
// Thread safety: pure functions (apart from the files they touch).
#pragma once

#include <string>

namespace kv::net {

struct KeyPair {
  std::string public_key;
  std::string secret_key;
};

bool GenerateKeyPair(KeyPair* pair, std::string* error);
bool WriteKeyFiles(const std::string& name, const KeyPair& pair, std::string* error);
bool ReadKeyFile(const std::string& path, std::string* key, std::string* error);
bool PublicKeyOf(const std::string& secret_key, std::string* public_key);
// Whether `key` is a key in Z85 text (40 characters that decode).
bool IsZ85Key(const std::string& key);

}  // namespace kv::net
