// Status: the result of an operation that can fail, as a value.
//
// Errors are values in kvstore: functions that can fail return a Status and
// hand results back through out-parameters. No exceptions cross a module
// boundary. A Status is cheap to copy when OK (no allocation).
// Thread safety: a Status is a plain value; distinct objects may be used from
// distinct threads freely.
#pragma once

#include <memory>
#include <string>
#include <string_view>

namespace kv {

class Status {
 public:
  enum class Code : unsigned char {
    kOk = 0,
    kNotFound,
    kCorruption,
    kIOError,
    kInvalidArgument,
    kUnavailable,
    kCompacted,  // the requested log entries were released by a snapshot
    kBusy,       // overloaded for now: the same request may succeed later
  };

  Status() = default;

  static Status OK() { return Status(); }
  static Status NotFound(std::string_view msg) { return Status(Code::kNotFound, msg); }
  static Status Corruption(std::string_view msg) { return Status(Code::kCorruption, msg); }
  static Status IOError(std::string_view msg) { return Status(Code::kIOError, msg); }
  static Status InvalidArgument(std::string_view msg) {
    return Status(Code::kInvalidArgument, msg);
  }
  static Status Unavailable(std::string_view msg) { return Status(Code::kUnavailable, msg); }
  static Status Compacted(std::string_view msg) { return Status(Code::kCompacted, msg); }
  static Status Busy(std::string_view msg) { return Status(Code::kBusy, msg); }

  bool ok() const { return code_ == Code::kOk; }
  bool IsNotFound() const { return code_ == Code::kNotFound; }
  bool IsCorruption() const { return code_ == Code::kCorruption; }
  bool IsIOError() const { return code_ == Code::kIOError; }
  bool IsInvalidArgument() const { return code_ == Code::kInvalidArgument; }
  bool IsUnavailable() const { return code_ == Code::kUnavailable; }
  bool IsCompacted() const { return code_ == Code::kCompacted; }
  bool IsBusy() const { return code_ == Code::kBusy; }

  Code code() const { return code_; }
  // The message given at construction, without the code's name.
  const std::string& message() const;
  // "OK", or the code's name and the message: "Corruption: bad crc at 4096".
  std::string ToString() const;

 private:
  Status(Code code, std::string_view msg)
      : code_(code), msg_(std::make_shared<const std::string>(msg)) {}

  Code code_ = Code::kOk;
  std::shared_ptr<const std::string> msg_;  // null when OK
};

}  // namespace kv
