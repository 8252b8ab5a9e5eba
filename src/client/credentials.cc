#include "kvstore/credentials.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "net/curve_keys.h"

namespace kv::client {

namespace {

std::string FromEnvironment(const std::string& given, const char* variable) {
  if (!given.empty()) return given;
  const char* value = std::getenv(variable);
  return value != nullptr ? value : "";
}

bool ParseNodeId(const std::string& text, uint64_t* id) {
  if (text.empty() || text.size() > 19 || text.find_first_not_of("0123456789") != text.npos) {
    return false;
  }
  *id = std::strtoull(text.c_str(), nullptr, 10);
  return *id != 0;
}

// host:port with a non-empty host and a port in 1..65535.
bool IsHostPort(const std::string& text) {
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0) return false;
  const std::string port = text.substr(colon + 1);
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != port.npos) {
    return false;
  }
  const int n = std::atoi(port.c_str());
  return n >= 1 && n <= 65535;
}

// Adds the lines of a server keys file (`path`, for messages) to *c.
bool ParseServerKeys(const std::string& text, const std::string& path, Credentials* c,
                     std::string* error) {
  std::stringstream lines(text);
  std::string line;
  std::map<std::string, uint64_t> id_of_address;
  for (int n = 1; std::getline(lines, line); ++n) {
    std::stringstream words(line);
    std::string id_text, key, address, extra;
    if (!(words >> id_text) || id_text[0] == '#') continue;
    words >> key >> address >> extra;
    const std::string where = path + " line " + std::to_string(n) + ": ";
    uint64_t id = 0;
    if (!ParseNodeId(id_text, &id) || key.empty() || !extra.empty()) {
      *error = where + "want \"ID PUBLIC-KEY [HOST:PORT]\" (a node id, its public key, " +
               "optionally its client address)";
      return false;
    }
    if (!net::IsZ85Key(key)) {
      *error = where + "\"" + key + "\" is not a public key (40 characters of Z85 text)";
      return false;
    }
    if (!address.empty() && !IsHostPort(address)) {
      *error = where + "\"" + address + "\" is not a client address HOST:PORT";
      return false;
    }
    if (!c->server_keys_by_id.emplace(id, key).second) {
      *error = where + "node " + id_text + " appears twice";
      return false;
    }
    if (address.empty()) continue;
    if (!id_of_address.emplace(address, id).second) {
      *error = where + "address " + address + " is given to node " +
               std::to_string(id_of_address[address]) + " already";
      return false;
    }
    c->server_keys[address] = key;
  }
  if (c->server_keys_by_id.empty()) {
    *error = path + " lists no member: want lines \"ID PUBLIC-KEY [HOST:PORT]\"";
    return false;
  }
  return true;
}

}  // namespace

bool LoadCredentials(const std::string& key_file, const std::string& server_keys_file,
                     Credentials* credentials, std::string* error) {
  const std::string key_path = FromEnvironment(key_file, "KVSTORE_KEY");
  const std::string keys_path = FromEnvironment(server_keys_file, "KVSTORE_SERVER_KEYS");
  Credentials c;
  if (key_path.empty() && keys_path.empty()) {
    *credentials = std::move(c);
    return true;
  }
  if (key_path.empty()) {
    *error = "server keys (" + keys_path +
             ") given without this client's key: give --key (or KVSTORE_KEY) too";
    return false;
  }
  if (keys_path.empty()) {
    *error = "a key (" + key_path +
             ") given without the members' public keys: give --server-keys (or "
             "KVSTORE_SERVER_KEYS), a file of \"ID PUBLIC-KEY [HOST:PORT]\" lines";
    return false;
  }
  // A NAME.pub in place of NAME.key reads as a valid key, and would fail
  // only at every handshake, silently.
  if (key_path.size() >= 4 && key_path.compare(key_path.size() - 4, 4, ".pub") == 0) {
    *error = key_path + " is a public key: give the secret key file (NAME.key)";
    return false;
  }
  if (!net::ReadKeyFile(key_path, &c.secret_key, error)) return false;
  if (!net::PublicKeyOf(c.secret_key, &c.public_key)) {
    *error = key_path + " does not hold a valid secret key";
    return false;
  }
  std::ifstream in(keys_path);
  if (!in) {
    *error = "cannot read " + keys_path + ": " + std::strerror(errno);
    return false;
  }
  std::stringstream text;
  text << in.rdbuf();
  if (!ParseServerKeys(text.str(), keys_path, &c, error)) return false;
  *credentials = std::move(c);
  return true;
}

}  // namespace kv::client
