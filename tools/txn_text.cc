#include "txn_text.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <vector>

namespace kv::tools {

const char* const kTxnTextHelp =
    R"(Reads a transaction from stdin, one item a line; blank lines and lines
starting with # are ignored:
  if value KEY VALUE             KEY holds exactly VALUE
  if absent KEY                  KEY does not exist
  if present KEY                 KEY exists
  if mod KEY = N                 KEY's mod_index (0 when absent) is N; also < N, > N
  then put KEY VALUE [--ttl MS]  the ops to run, in order, when every condition holds
  then del KEY
  then get KEY
  else put|del|get ...           the ops to run otherwise
A token in double quotes may hold spaces and the escapes \" \\ \n \t \xHH.
All the keys must be in one shard: give them a common hash tag, {TAG}.
Prints SUCCEEDED or FAILED (the branch that ran) with the txn's index, then a
line for each op of that branch. Exit 0 when the then branch ran, 1 when the
else branch did.

A lock, taken only if nobody holds it (else: who does):
  kvctl txn <<'EOF'
  if absent lock
  then put lock me --ttl 10000
  else get lock
  EOF

A transfer between two counters, only if neither changed since they were read
at mod_index 41 and 40 (the hash tag {acct} keeps them in one shard):
  kvctl txn <<'EOF'
  if mod {acct}:a = 41
  if mod {acct}:b = 40
  then put {acct}:a 70
  then put {acct}:b 30
  else get {acct}:a
  else get {acct}:b
  EOF)";

namespace {

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\r'; }

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Splits a line into its tokens, unquoting the quoted ones. False, with
// *error, for a quote that does not close or a bad escape.
bool Tokenize(std::string_view line, std::vector<std::string>* tokens, std::string* error) {
  size_t i = 0;
  while (true) {
    while (i < line.size() && IsSpace(line[i])) ++i;
    if (i == line.size()) return true;
    std::string& token = tokens->emplace_back();
    if (line[i] != '"') {
      while (i < line.size() && !IsSpace(line[i])) token.push_back(line[i++]);
      continue;
    }
    for (++i;; ++i) {
      if (i == line.size()) {
        *error = "a quoted token without its closing quote";
        return false;
      }
      if (line[i] == '"') break;
      if (line[i] != '\\') {
        token.push_back(line[i]);
        continue;
      }
      const char escape = ++i < line.size() ? line[i] : '\0';
      if (escape == '"' || escape == '\\') {
        token.push_back(escape);
      } else if (escape == 'n') {
        token.push_back('\n');
      } else if (escape == 't') {
        token.push_back('\t');
      } else if (escape == 'x' && i + 2 < line.size() && HexDigit(line[i + 1]) >= 0 &&
                 HexDigit(line[i + 2]) >= 0) {
        token.push_back(static_cast<char>(HexDigit(line[i + 1]) * 16 + HexDigit(line[i + 2])));
        i += 2;
      } else {
        *error = "a bad escape in a quoted token (there are \\\" \\\\ \\n \\t \\xHH)";
        return false;
      }
    }
    if (++i < line.size() && !IsSpace(line[i])) {
      *error = "a closing quote must end its token";
      return false;
    }
  }
}

// A decimal number; false for anything else, or one over 2^64 - 1.
bool ParseNumber(const std::string& token, uint64_t* out) {
  if (token.empty() || token.size() > 20) return false;
  uint64_t n = 0;
  for (char c : token) {
    if (c < '0' || c > '9') return false;
    const uint64_t digit = static_cast<uint64_t>(c - '0');
    if (n > (UINT64_MAX - digit) / 10) return false;
    n = n * 10 + digit;
  }
  *out = n;
  return true;
}

// One `if` line's condition; false, with *error, when it is not one.
bool ParseCompare(const std::vector<std::string>& t, client::Compare* out, std::string* error) {
  using client::Compare;
  const std::string kind = t.size() > 1 ? t[1] : "";
  if (kind == "value" && t.size() == 4) {
    *out = Compare::Value(t[2], t[3]);
  } else if (kind == "absent" && t.size() == 3) {
    *out = Compare::Absent(t[2]);
  } else if (kind == "present" && t.size() == 3) {
    *out = Compare::Present(t[2]);
  } else if (kind == "mod" && t.size() == 5 && (t[3] == "=" || t[3] == "<" || t[3] == ">")) {
    uint64_t index = 0;
    if (!ParseNumber(t[4], &index)) {
      *error = "\"" + t[4] + "\" is not a mod_index (a number)";
      return false;
    }
    const Compare::Order order = t[3] == "<"   ? Compare::kLess
                                 : t[3] == ">" ? Compare::kGreater
                                               : Compare::kEqual;
    *out = Compare::ModIndex(t[2], order, index);
  } else {
    *error =
        "expected \"if value KEY VALUE\", \"if absent KEY\", \"if present KEY\" or "
        "\"if mod KEY =|<|> N\"";
    return false;
  }
  return true;
}

// One `then` or `else` line's op; false, with *error, when it is not one.
bool ParseOp(const std::vector<std::string>& t, client::TxnOp* out, std::string* error) {
  using client::TxnOp;
  const std::string op = t.size() > 1 ? t[1] : "";
  if (op == "put" && (t.size() == 4 || (t.size() == 6 && t[4] == "--ttl"))) {
    uint64_t ttl_ms = 0;
    if (t.size() == 6 && !ParseNumber(t[5], &ttl_ms)) {
      *error = "\"" + t[5] + "\" is not a --ttl (milliseconds)";
      return false;
    }
    *out = TxnOp::Put(t[2], t[3], std::chrono::milliseconds(ttl_ms));
  } else if (op == "del" && t.size() == 3) {
    *out = TxnOp::Delete(t[2]);
  } else if (op == "get" && t.size() == 3) {
    *out = TxnOp::Get(t[2]);
  } else {
    *error = "expected \"" + t[0] + " put KEY VALUE [--ttl MS]\", \"" + t[0] + " del KEY\" or \"" +
             t[0] + " get KEY\"";
    return false;
  }
  return true;
}

}  // namespace

bool ParseTxnText(std::string_view text, client::Transaction* txn, std::string* error) {
  int number = 0;
  bool any = false;
  while (!text.empty()) {
    const size_t end = std::min(text.find('\n'), text.size());
    const std::string_view line = text.substr(0, end);
    text.remove_prefix(std::min(end + 1, text.size()));
    ++number;
    const size_t first = line.find_first_not_of(" \t\r");
    if (first == std::string_view::npos || line[first] == '#') continue;
    std::vector<std::string> t;
    std::string why;
    bool ok = Tokenize(line, &t, &why);
    if (ok && t[0] == "if") {
      ok = ParseCompare(t, &txn->compare.emplace_back(), &why);
    } else if (ok && (t[0] == "then" || t[0] == "else")) {
      ok = ParseOp(t, &(t[0] == "then" ? txn->success : txn->failure).emplace_back(), &why);
    } else if (ok) {
      why = "expected if, then or else, not \"" + t[0] + "\"";
      ok = false;
    }
    if (!ok) {
      *error = "line " + std::to_string(number) + ": " + why;
      return false;
    }
    any = true;
  }
  if (!any) *error = "no if, then or else line: nothing to do";
  return any;
}

std::string QuoteToken(const std::string& s) {
  bool plain = !s.empty();
  for (unsigned char c : s) plain = plain && c > ' ' && c != '"' && c != '\\' && c != 0x7f;
  if (plain) return s;
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < ' ' || c == 0x7f) {
      static const char* kDigits = "0123456789abcdef";
      out += "\\x";
      out += kDigits[c >> 4];
      out += kDigits[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

}  // namespace kv::tools
