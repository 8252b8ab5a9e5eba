// Membership: who is in the cluster, and the requests that change it.
//
// Unsharded clusters keep the member list in the Raft configuration of their
// one group: member_add adds a learner with its address, promotes it once it
// has caught up and answers then; member_remove is answered when the removal
// is applied. Sharded clusters keep it in the metadata group as member/<id>
// keys, written like any key; every node computes the placement from that
// list (node/shard_manager.h), and each group's leader moves its replicas.
// Thread safety: none; the loop thread owns it.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <zmq.hpp>

#include "net/client_codec.h"
#include "node/context.h"
#include "node/request.h"

namespace kv::node {

class ClientFront;
class ShardManager;

class Membership {
 public:
  Membership(NodeContext* ctx, ClientFront* front, ShardManager* shards)
      : ctx_(ctx), front_(front), shards_(shards) {}

  // A joining node asks the member at `endpoint` for the cluster's members
  // (into ctx->members) and checks that the sharding settings agree before
  // it touches its data dir. InvalidArgument if they differ; Unavailable if
  // the member cannot be reached within the join deadline.
  static Status LearnMembersFrom(zmq::context_t* zmq, NodeContext* ctx,
                                 const std::string& endpoint);

  // member_add and member_remove requests.
  void Handle(Pending p, const net::ClientRequest& req);
  // Every tick: unsharded clusters promote caught-up learners and answer
  // their add requests; the metadata group's leader records the founders as
  // member keys once.
  void Tick(Group& g);
  // A committed configuration change of group g (loop thread, in log order).
  void OnConfChangeCommitted(Group& g, const raft::Entry& e);
  // The metadata group's member keys and placement rule at its applied index
  // `version`.
  void OnMemberKeys(uint64_t version, const std::map<std::string, std::string>& keys,
                    uint32_t placement_rule);
  // Answers the add requests waiting on g (leadership was lost).
  void FailJoining(Group& g);

 private:
  // The public key a member_add records for the new member (empty without
  // CURVE): its "pub", else the key already known for its id.
  // InvalidArgument when a secure cluster would get none, or "pub" is no key.
  Status NewMemberKey(const net::ClientRequest& req, std::string* key) const;
  void HandleSharded(Pending p, const net::ClientRequest& req);
  void PromoteCaughtUpLearners(Group& g);
  void SeedMembers(Group& meta);

  NodeContext* ctx_;
  ClientFront* front_;
  ShardManager* shards_;
  bool members_seeded_ = false;  // the metadata group holds member keys
  raft::Term seeding_term_ = 0;  // when this node (as meta leader) proposed them
};

}  // namespace kv::node
