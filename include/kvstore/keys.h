// Keys: CurveZMQ key pairs (elliptic-curve keys for ZeroMQ's CURVE security,
// RFC 26 of the ZeroMQ project), as kvstore nodes and clients keep them in
// files: NAME.key holds the secret key, NAME.pub the public key, each as one
// line of Z85 text (40 characters).
// Thread safety: pure functions (apart from the files they touch).
#pragma once

#include <string>

namespace kv::client {

// A key pair, each key in Z85 text.
struct KeyPair {
  std::string public_key;
  std::string secret_key;
};

// Makes a new key pair. False (and *error says why) when the libzmq in use
// was built without CURVE.
bool GenerateKeyPair(KeyPair* pair, std::string* error);

// Writes NAME.key (the secret key, file mode 0600) and NAME.pub (the public
// key, 0644), each synced to disk. Refuses, writing nothing, when either
// file exists: a key in use must never be overwritten by accident.
bool WriteKeyFiles(const std::string& name, const KeyPair& pair, std::string* error);

// Reads a key file: one Z85 key of 40 characters, surrounding whitespace
// ignored. False (and *error says why) when it cannot be read or holds no
// valid key.
bool ReadKeyFile(const std::string& path, std::string* key, std::string* error);

// The public key that belongs to a secret key (both Z85). False when
// `secret_key` is not a valid Z85 key.
bool PublicKeyOf(const std::string& secret_key, std::string* public_key);

// Whether `text` is a key in Z85 text: 40 characters that decode.
bool IsZ85Key(const std::string& text);

}  // namespace kv::client
