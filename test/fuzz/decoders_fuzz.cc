// libFuzzer target for everything that decodes bytes from the outside: client
// requests, peer Raft messages, log commands and state machine snapshots.
// The first byte picks the decoder. Anything decoded must re-encode to
// something that decodes to the same value.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "kv/command.h"
#include "kv/state_machine.h"
#include "net/codec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 4) {
    case 0: {
      kv::net::ClientRequest req;
      bool id_known = false;
      if (kv::net::DecodeClientRequest(in, kv::net::RequestLimits{}, &req, &id_known).ok()) {
        kv::net::ClientRequest again;
        if (!kv::net::DecodeClientRequest(kv::net::EncodeClientRequest(req),
                                          kv::net::RequestLimits{}, &again, &id_known)
                 .ok() ||
            again.key != req.key || again.id != req.id) {
          abort();
        }
      }
      break;
    }
    case 1: {
      kv::raft::Message m;
      if (kv::net::DecodeRaftMessage(in, &m).ok()) {
        kv::raft::Message again;
        if (!kv::net::DecodeRaftMessage(kv::net::EncodeRaftMessage(m), &again).ok()) abort();
        // The snapshot travels only on kSnapshot messages.
        if (m.type != kv::raft::MessageType::kSnapshot) m.snapshot = kv::raft::Snapshot{};
        if (!(again == m)) abort();
      }
      break;
    }
    case 2: {
      kv::Command c;
      if (kv::Command::Decode(in, &c).ok()) {
        kv::Command again;
        if (!kv::Command::Decode(c.Encode(), &again).ok() || !(again == c)) abort();
      }
      break;
    }
    case 3: {
      kv::StateMachine sm;
      if (sm.Restore(in).ok()) {
        kv::StateMachine again;
        if (!again.Restore(sm.Serialize()).ok() || again.Digest() != sm.Digest()) abort();
      }
      break;
    }
  }
  return 0;
}
