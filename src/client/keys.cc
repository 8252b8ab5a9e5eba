#include "kvstore/keys.h"

#include "net/curve_keys.h"

namespace kv::client {

bool GenerateKeyPair(KeyPair* pair, std::string* error) {
  net::KeyPair p;
  if (!net::GenerateKeyPair(&p, error)) return false;
  pair->public_key = std::move(p.public_key);
  pair->secret_key = std::move(p.secret_key);
  return true;
}

bool WriteKeyFiles(const std::string& name, const KeyPair& pair, std::string* error) {
  return net::WriteKeyFiles(name, net::KeyPair{pair.public_key, pair.secret_key}, error);
}

bool ReadKeyFile(const std::string& path, std::string* key, std::string* error) {
  return net::ReadKeyFile(path, key, error);
}

bool PublicKeyOf(const std::string& secret_key, std::string* public_key) {
  return net::PublicKeyOf(secret_key, public_key);
}

bool IsZ85Key(const std::string& text) { return net::IsZ85Key(text); }

}  // namespace kv::client
