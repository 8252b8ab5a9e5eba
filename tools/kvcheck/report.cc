#include "kvcheck/report.h"

#include <algorithm>
#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <map>

namespace kv {
namespace check {

namespace {

void Appendf(std::string* out, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
void Appendf(std::string* out, const char* fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  const int n = std::vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if (static_cast<size_t>(n) < sizeof(buf)) {
    out->append(buf, static_cast<size_t>(n));
    return;
  }
  std::string big(static_cast<size_t>(n) + 1, '\0');
  va_start(ap, fmt);
  std::vsnprintf(&big[0], big.size(), fmt, ap);
  va_end(ap);
  big.resize(static_cast<size_t>(n));
  out->append(big);
}

std::string Quote(const std::string& s, size_t max_chars) {
  std::string out;
  if (max_chars != 0 && s.size() > max_chars) {
    AppendJsonString(s.substr(0, max_chars), &out);
    out.insert(out.size() - 1, "...");
  } else {
    AppendJsonString(s, &out);
  }
  return out;
}

std::string QuoteOpt(const std::optional<std::string>& v, size_t max_chars, const char* none) {
  return v ? Quote(*v, max_chars) : std::string(none);
}

int64_t FirstTime(const History& h) {
  int64_t t = kNever;
  for (const Operation& op : h.ops) t = std::min(t, op.invoke_time);
  return t == kNever ? 0 : t;
}

std::string RelTime(int64_t t, int64_t origin) {
  if (t == kNever) return "never";
  char buf[48];
  const int64_t d = t - origin;
  std::snprintf(buf, sizeof(buf), "%s%" PRId64 ".%09" PRId64, d < 0 ? "-" : "",
                (d < 0 ? -d : d) / 1000000000, (d < 0 ? -d : d) % 1000000000);
  return buf;
}

// Lists ops by invoke time. With a window [begin, end], marks with ~ the
// ops overlapping its edges.
void AppendOpTable(const History& h, const std::vector<size_t>& ops, int64_t origin,
                   const ReportOptions& o, std::string* out, int64_t begin = 0,
                   int64_t end = kNever) {
  std::vector<size_t> sorted = ops;
  std::sort(sorted.begin(), sorted.end(),
            [&](size_t a, size_t b) { return h.ops[a].invoke_time < h.ops[b].invoke_time; });
  Appendf(out, "      %-8s %-36s %17s %17s  %-7s %s\n", "process", "operation", "invoke (s)",
          "return (s)", "outcome", "lines");
  for (size_t i : sorted) {
    const Operation& op = h.ops[i];
    std::string lines = std::to_string(op.invoke_line);
    if (op.return_line != 0) lines += "," + std::to_string(op.return_line);
    const int64_t ret = op.outcome == Outcome::kInfo ? kNever : op.return_time;
    const bool edge = op.invoke_time < begin || ret > end;
    Appendf(out, "    %s p%-7" PRId64 " %-36s %17s %17s  %-7s %s\n", edge ? "~" : " ", op.process,
            DescribeOp(h, i, o.max_value_chars).c_str(), RelTime(op.invoke_time, origin).c_str(),
            RelTime(ret, origin).c_str(), OutcomeName(op.outcome), lines.c_str());
  }
}

void AppendJsonOp(const History& h, size_t i, std::string* out) {
  const Operation& op = h.ops[i];
  // What a scan or txn stands for has its f, as it has its lines.
  Appendf(out, "{\"index\":%zu,\"process\":%" PRId64 ",\"f\":\"%s\",\"outcome\":\"%s\",\"key\":", i,
          op.process, OpKindName(op.parent != kNoParent ? h.ops[op.parent].kind : op.kind),
          OutcomeName(op.outcome));
  AppendJsonString(op.key, out);
  auto opt = [&](const char* name, const std::optional<std::string>& v) {
    Appendf(out, ",\"%s\":", name);
    if (v) {
      AppendJsonString(*v, out);
    } else {
      out->append("null");
    }
  };
  if (op.kind == OpKind::kPut || op.kind == OpKind::kCas) opt("value", op.value);
  if (op.kind == OpKind::kCas) opt("expected", op.expected);
  if (op.kind == OpKind::kGet && op.outcome == Outcome::kOk) opt("result", op.result);
  Appendf(out, ",\"invoke\":%" PRId64 ",\"return\":", op.invoke_time);
  if (op.outcome == Outcome::kInfo) {
    out->append("null");
  } else {
    Appendf(out, "%" PRId64, op.return_time);
  }
  Appendf(out, ",\"invoke_line\":%zu,\"return_line\":%zu}", op.invoke_line, op.return_line);
}

void AppendJsonOps(const History& h, const std::vector<size_t>& ops, std::string* out) {
  out->push_back('[');
  for (size_t k = 0; k < ops.size(); k++) {
    if (k) out->push_back(',');
    AppendJsonOp(h, ops[k], out);
  }
  out->push_back(']');
}

const char* JsonVerdict(Verdict v) {
  switch (v) {
    case Verdict::kLinearizable:
      return "linearizable";
    case Verdict::kNotLinearizable:
      return "not linearizable";
    case Verdict::kUnknown:
      return "unknown";
  }
  return "?";
}

// DescribeOp of op as if it were an operation of the file.
std::string DescribeOwn(const Operation& op, size_t max_value_chars) {
  switch (op.kind) {
    case OpKind::kPut:
      return "put " + QuoteOpt(op.value, max_value_chars, "null");
    case OpKind::kGet:
      if (op.outcome != Outcome::kOk) return "get";
      return "get -> " + QuoteOpt(op.result, max_value_chars, "not found");
    case OpKind::kDelete:
      return "delete";
    case OpKind::kCas:
      return "cas " + QuoteOpt(op.expected, max_value_chars, "absent") + " -> " +
             QuoteOpt(op.value, max_value_chars, "null");
    case OpKind::kScan: {
      std::string out = "scan [" + Quote(op.key, max_value_chars) + ", " +
                        QuoteOpt(op.end, max_value_chars, "end") + ")";
      if (op.outcome == Outcome::kOk) {
        out += " -> " + std::to_string(op.kvs.size()) + (op.kvs.size() == 1 ? " key" : " keys");
        if (op.more) out += ", more";
      }
      return out;
    }
    case OpKind::kTxn:
      return "txn";
  }
  return "?";
}

}  // namespace

std::string DescribeOp(const History& history, size_t i, size_t max_value_chars) {
  const Operation& op = history.ops[i];
  if (op.parent == kNoParent) return DescribeOwn(op, max_value_chars);
  if (history.ops[op.parent].kind == OpKind::kScan) {
    return "scan -> " + QuoteOpt(op.result, max_value_chars, "absent");
  }
  return "txn " + DescribeOwn(op, max_value_chars);
}

std::string FormatText(const History& h, const CheckResult& r, const ReportOptions& o) {
  std::string out;
  size_t ok = 0, fail = 0, info = 0, n_lin = 0, n_bad = 0, n_unknown = 0;
  for (const KeyResult& k : r.keys) {
    ok += k.ok;
    fail += k.fail;
    info += k.info;
    if (k.verdict == Verdict::kLinearizable) n_lin++;
    if (k.verdict == Verdict::kNotLinearizable) n_bad++;
    if (k.verdict == Verdict::kUnknown) n_unknown++;
  }
  Appendf(&out, "verdict: %s\n",
          r.verdict == Verdict::kUnknown ? "unknown (search budget exhausted)"
                                         : VerdictName(r.verdict));
  Appendf(
      &out, "  %zu operations (%zu ok, %zu fail, %zu info) on %zu key%s; %zu checked in %.3f s\n",
      r.ops, ok, fail, info, r.keys.size(), r.keys.size() == 1 ? "" : "s", r.checked, r.seconds);
  if (r.scans > 0) {
    Appendf(&out,
            "  including %zu reads by %zu scan%s, one per key of the range each covered (%zu "
            "of a key it did not return: absent)\n",
            r.scan_reads, r.scans, r.scans == 1 ? "" : "s", r.scan_absent);
  }
  if (r.txns > 0) {
    Appendf(&out, "  including %zu by %zu txn%s, each a write or read of one key\n", r.txn_ops,
            r.txns, r.txns == 1 ? "" : "s");
  }
  Appendf(&out, "  keys: %zu linearizable, %zu NOT linearizable, %zu unknown\n", n_lin, n_bad,
          n_unknown);

  // Per-key table: all keys when few or verbose, else the interesting ones.
  std::vector<size_t> rows;
  const bool all = o.verbose || r.keys.size() <= 20;
  for (size_t k = 0; k < r.keys.size(); k++) {
    if (all || r.keys[k].verdict != Verdict::kLinearizable) rows.push_back(k);
  }
  if (!all) {
    std::vector<size_t> slow(r.keys.size());
    for (size_t k = 0; k < slow.size(); k++) slow[k] = k;
    std::sort(slow.begin(), slow.end(),
              [&](size_t a, size_t b) { return r.keys[a].seconds > r.keys[b].seconds; });
    for (size_t k = 0; k < slow.size() && k < 5; k++) {
      if (std::find(rows.begin(), rows.end(), slow[k]) == rows.end()) rows.push_back(slow[k]);
    }
    std::sort(rows.begin(), rows.end());
  }
  if (!rows.empty()) {
    Appendf(&out, "\n  %-24s %-17s %8s %8s %6s %6s %8s %12s %9s\n", "key", "verdict", "ops", "ok",
            "fail", "info", "checked", "steps", "time (s)");
    for (size_t k : rows) {
      const KeyResult& kr = r.keys[k];
      std::string verdict = VerdictName(kr.verdict);
      Appendf(&out, "  %-24s %-17s %8zu %8zu %6zu %6zu %8zu %12" PRIu64 " %9.3f\n",
              Quote(kr.key, 22).c_str(), verdict.c_str(), kr.ops, kr.ok, kr.fail, kr.info,
              kr.checked, kr.steps, kr.seconds);
      if (kr.verdict == Verdict::kUnknown) {
        Appendf(&out, "  %-24s   (%s)\n", "", kr.unknown_reason.c_str());
      }
    }
    if (!all) {
      Appendf(&out, "  (%zu more linearizable keys; --verbose lists every key)\n",
              r.keys.size() - rows.size());
    }
  }

  if (r.violation) {
    const Violation& v = *r.violation;
    const int64_t origin = FirstTime(h);
    Appendf(&out, "\nviolation on key %s (times in seconds from the first invoke)\n",
            Quote(v.key, 0).c_str());
    if (!v.witness.empty()) {
      Appendf(&out,
              "  Between %s s and %s s, no order of %s consistent with a\n"
              "  register, whatever the key held at the start (absent, or a value written\n"
              "  before). Operations marked ~ overlap an edge of that window: they may take\n"
              "  effect inside it or outside it.\n",
              RelTime(v.witness_begin, origin).c_str(), RelTime(v.witness_end, origin).c_str(),
              v.witness.size() == 1 ? "this operation is" : "these operations is");
      // Unknown-outcome ops overlapping an edge are often many and alike:
      // list a few of each kind, count the rest.
      std::vector<size_t> shown;
      std::map<std::string, std::vector<size_t>> alike;
      for (size_t i : v.witness) {
        const Operation& op = h.ops[i];
        if (op.outcome == Outcome::kInfo && op.invoke_time < v.witness_begin) {
          alike[DescribeOp(h, i, o.max_value_chars)].push_back(i);
        } else {
          shown.push_back(i);
        }
      }
      std::vector<std::string> folded;
      for (auto& [what, ops] : alike) {
        const size_t keep = std::min<size_t>(ops.size(), 2);
        shown.insert(shown.end(), ops.begin(), ops.begin() + static_cast<std::ptrdiff_t>(keep));
        if (ops.size() > keep) {
          folded.push_back(std::to_string(ops.size() - keep) + " more unknown-outcome " + what +
                           " invoked before the window");
        }
      }
      AppendOpTable(h, shown, origin, o, &out, v.witness_begin, v.witness_end);
      for (const std::string& f : folded)
        Appendf(&out, "      (%s; --json lists them)\n", f.c_str());
    }
    Appendf(&out,
            "  The search got furthest after ordering %zu operation%s; the key then held %s,\n"
            "  and this operation could not be placed before it returned:\n",
            v.linearized, v.linearized == 1 ? "" : "s",
            QuoteOpt(v.value_at_failure, o.max_value_chars, "nothing (absent)").c_str());
    AppendOpTable(h, {v.stuck_op}, origin, o, &out);
    if (!v.linearized_tail.empty()) {
      Appendf(&out, "  The last operations it had ordered, in that order:\n");
      // Keep the search's order, not invoke order.
      Appendf(&out, "      %-8s %-36s %17s %17s  %-7s %s\n", "process", "operation", "invoke (s)",
              "return (s)", "outcome", "lines");
      for (size_t i : v.linearized_tail) {
        const Operation& op = h.ops[i];
        std::string lines = std::to_string(op.invoke_line);
        if (op.return_line != 0) lines += "," + std::to_string(op.return_line);
        Appendf(&out, "      p%-7" PRId64 " %-36s %17s %17s  %-7s %s\n", op.process,
                DescribeOp(h, i, o.max_value_chars).c_str(),
                RelTime(op.invoke_time, origin).c_str(),
                RelTime(op.outcome == Outcome::kInfo ? kNever : op.return_time, origin).c_str(),
                OutcomeName(op.outcome), lines.c_str());
      }
    }
    std::vector<size_t> others;
    for (size_t i : v.pending) {
      if (i != v.stuck_op) others.push_back(i);
    }
    if (!others.empty()) {
      Appendf(&out, "  Operations still unordered that were invoked before it returned:\n");
      AppendOpTable(h, others, origin, o, &out);
    }
  }
  return out;
}

std::string FormatJson(const History& h, const CheckResult& r) {
  std::string out;
  const char* verdict = JsonVerdict(r.verdict);
  Appendf(&out,
          "{\"verdict\":\"%s\",\"ops\":%zu,\"checked\":%zu,\"keys\":%zu,\"scans\":%zu,"
          "\"scan_reads\":%zu,\"scan_absent\":%zu,\"txns\":%zu,\"txn_ops\":%zu,\"seconds\":%.6f",
          verdict, r.ops, r.checked, r.keys.size(), r.scans, r.scan_reads, r.scan_absent, r.txns,
          r.txn_ops, r.seconds);
  out.append(",\"per_key\":[");
  for (size_t k = 0; k < r.keys.size(); k++) {
    const KeyResult& kr = r.keys[k];
    if (k) out.push_back(',');
    out.append("{\"key\":");
    AppendJsonString(kr.key, &out);
    Appendf(&out,
            ",\"verdict\":\"%s\",\"ops\":%zu,\"ok\":%zu,\"fail\":%zu,\"info\":%zu,"
            "\"checked\":%zu,\"steps\":%" PRIu64 ",\"memo_entries\":%zu,\"memo_resets\":%" PRIu64
            ",\"seconds\":%.6f",
            JsonVerdict(kr.verdict), kr.ops, kr.ok, kr.fail, kr.info, kr.checked, kr.steps,
            kr.memo_entries, kr.memo_resets, kr.seconds);
    if (kr.verdict == Verdict::kUnknown) {
      out.append(",\"reason\":");
      AppendJsonString(kr.unknown_reason, &out);
    }
    out.push_back('}');
  }
  out.push_back(']');
  if (r.violation) {
    const Violation& v = *r.violation;
    out.append(",\"violation\":{\"key\":");
    AppendJsonString(v.key, &out);
    out.append(",\"witness\":");
    AppendJsonOps(h, v.witness, &out);
    Appendf(&out, ",\"witness_begin\":%" PRId64 ",\"witness_end\":%" PRId64, v.witness_begin,
            v.witness_end);
    Appendf(&out, ",\"linearized\":%zu,\"value_at_failure\":", v.linearized);
    if (v.value_at_failure) {
      AppendJsonString(*v.value_at_failure, &out);
    } else {
      out.append("null");
    }
    out.append(",\"stuck\":");
    AppendJsonOp(h, v.stuck_op, &out);
    out.append(",\"linearized_tail\":");
    AppendJsonOps(h, v.linearized_tail, &out);
    out.append(",\"pending\":");
    AppendJsonOps(h, v.pending, &out);
    out.push_back('}');
  }
  out.append("}\n");
  return out;
}

}  // namespace check
}  // namespace kv
