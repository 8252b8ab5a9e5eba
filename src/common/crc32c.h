// CRC32C (Castagnoli polynomial, the checksum of iSCSI, ext4 and LevelDB).
//
// Frames write-ahead log records and snapshot files. SSE 4.2's crc32
// instruction where the CPU has it, else a table-driven implementation.
// Pure functions; thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace kv {

// Returns the CRC32C of data[0, n) continued from `crc`, the CRC32C of some
// earlier bytes: Crc32cExtend(Crc32c(a), b) == Crc32c(a + b).
uint32_t Crc32cExtend(uint32_t crc, const void* data, size_t n);
// The same without the CPU's crc32 instruction (which Crc32cExtend uses
// where the CPU has it): for tests, to check one against the other.
uint32_t Crc32cExtendPortable(uint32_t crc, const void* data, size_t n);

// Returns the CRC32C of data[0, n). Crc32c("123456789") == 0xE3069283.
inline uint32_t Crc32c(const void* data, size_t n) { return Crc32cExtend(0, data, n); }
inline uint32_t Crc32c(std::string_view s) { return Crc32c(s.data(), s.size()); }

}  // namespace kv
