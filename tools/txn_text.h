// The text form of a transaction that `kvctl txn` reads on stdin, one item a
// line (the grammar is kTxnTextHelp, which `kvctl txn --help` prints), and
// the quoting of keys and values that it uses, which kvctl's output uses too
// so that what it prints can be pasted back.
// Thread safety: pure functions.
#pragma once

#include <string>
#include <string_view>

#include "kvstore/client.h"

namespace kv::tools {

extern const char* const kTxnTextHelp;

// Parses `text` into *txn. False, with *error naming the line ("line 3:
// ..."), if it is not a transaction in that grammar or holds no item.
bool ParseTxnText(std::string_view text, client::Transaction* txn, std::string* error);

// `s` as a token of that text: as it is when it reads back so, else in
// double quotes with backslash escapes.
std::string QuoteToken(const std::string& s);

}  // namespace kv::tools
