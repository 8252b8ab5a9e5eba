// Codec: the umbrella over the codecs, split by protocol. New code includes
// the one it needs: net/peer_codec.h (Raft messages, leader hints, removed
// notices) or net/client_codec.h (requests, replies, status, shard map).
#pragma once

#include "net/client_codec.h"
#include "net/peer_codec.h"
