// Little helpers to encode integers and byte strings into a std::string and
// decode them back from a string_view, as the on-log formats need.
// Varints are LEB128 (7 bits per byte, low first). Decoders advance the view
// and return false on truncated or malformed input; they never read past it.
// Thread safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace kv {

void PutVarint64(std::string* out, uint64_t v);
// The bytes PutVarint64 writes for v (1 to 10).
size_t VarintLength(uint64_t v);
void PutFixed64(std::string* out, uint64_t v);
// A varint length followed by the bytes.
void PutLengthPrefixed(std::string* out, std::string_view bytes);

bool GetVarint64(std::string_view* in, uint64_t* v);
bool GetFixed64(std::string_view* in, uint64_t* v);
bool GetLengthPrefixed(std::string_view* in, std::string_view* bytes);
bool GetByte(std::string_view* in, uint8_t* b);

}  // namespace kv
