#include "common/status.h"

namespace kv {

namespace {
const char* CodeName(Status::Code code) {
  switch (code) {
    case Status::Code::kOk:
      return "OK";
    case Status::Code::kNotFound:
      return "NotFound";
    case Status::Code::kCorruption:
      return "Corruption";
    case Status::Code::kIOError:
      return "IOError";
    case Status::Code::kInvalidArgument:
      return "InvalidArgument";
    case Status::Code::kUnavailable:
      return "Unavailable";
    case Status::Code::kCompacted:
      return "Compacted";
    case Status::Code::kBusy:
      return "Busy";
  }
  return "Unknown";
}
}  // namespace

const std::string& Status::message() const {
  static const std::string kEmpty;
  return msg_ ? *msg_ : kEmpty;
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  std::string s = CodeName(code_);
  if (msg_ && !msg_->empty()) {
    s += ": ";
    s += *msg_;
  }
  return s;
}

}  // namespace kv
