#!/usr/bin/env bash
# Checks that every C++ file is formatted as .clang-format says (Debian's
# clang-format); with --fix, formats them in place.
#   scripts/format.sh          exit 1 and list the files that need formatting
#   scripts/format.sh --fix    format them
set -euo pipefail
cd "$(dirname "$0")/.."

# New files too, before they are added (but nothing .gitignore leaves out).
mapfile -t files < <(git ls-files --cached --others --exclude-standard '*.cc' '*.h')
if [ "${1:-}" = "--fix" ]; then
  clang-format -i "${files[@]}"
  exit 0
fi
unformatted=()
for f in "${files[@]}"; do
  clang-format --dry-run --Werror "$f" >/dev/null 2>&1 || unformatted+=("$f")
done
if [ ${#unformatted[@]} -ne 0 ]; then
  echo "format: ${#unformatted[@]} file(s) differ from .clang-format; run scripts/format.sh --fix:"
  printf '  %s\n' "${unformatted[@]}"
  exit 1
fi
echo "format: ${#files[@]} files formatted as .clang-format says"
