// Names the calling thread, as top -H, ps -L and perf show it, so that an
// operator (or a profile) can tell the WAL writer from a worker.
// Linux keeps at most 15 characters; longer names are cut.
#pragma once

#include <pthread.h>

#include <string>

namespace kv {

inline void NameThisThread(const std::string& name) {
  pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
}

}  // namespace kv
