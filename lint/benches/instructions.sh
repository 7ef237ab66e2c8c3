#!/usr/bin/env bash
# Instructions one more message costs lint (MIME parse + lint), counted by
# callgrind: repeatable to the last few instructions on a machine whose
# seconds drift by half from one day to the next. Compare builds with it;
# criterion's seconds are for the target itself (docs/performance.md).
#
#   lint/benches/instructions.sh [BENCH] [BINARY]
#
# BENCH is a criterion bench id (default lint/newsletter); BINARY a built
# bench executable (default: the one `cargo bench --no-run` builds now).
# Keep a copy of a binary to compare it with a later build.
#
# The bench runs twice under callgrind, for 6 and for 24 seconds of
# criterion's --profile-time, collecting only inside lint::lint and
# Email::parse; the difference in instructions over the difference in
# iterations cancels what is done once (regexes, the model, caches).
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$repo"
bench="${1:-lint/newsletter}"
bin="${2:-}"
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }
if [ -z "$bin" ]; then
    bin="$(cargo bench -p mailroom-lint --bench lint --no-run 2>&1 |
        sed -n 's/.*Executable .*(\(.*\))$/\1/p' | tail -1)"
    [ -n "$bin" ] || { echo "could not build the lint bench" >&2; exit 1; }
fi
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
count() { # seconds -> "instructions iterations"
    CARGO_MANIFEST_DIR="$repo/lint" valgrind --tool=callgrind \
        --callgrind-out-file="$out/cg.$1" \
        --toggle-collect='lint::lint' --toggle-collect='lint::email::Email::parse' \
        "$bin" --bench "$bench" --profile-time "$1" >/dev/null 2>&1
    local total id calls
    total="$(sed -n 's/^summary: //p' "$out/cg.$1")"
    id="$(sed -n 's/^fn=(\([0-9]*\)) lint::lint$/\1/p' "$out/cg.$1" | head -1)"
    [ -n "$id" ] || id="$(sed -n 's/^cfn=(\([0-9]*\)) lint::lint$/\1/p' "$out/cg.$1" | head -1)"
    calls="$(grep -A1 "^cfn=($id)" "$out/cg.$1" | sed -n 's/^calls=\([0-9]*\) .*/\1/p' | sort -n | tail -1)"
    echo "$total $calls"
}
read -r t1 n1 < <(count 6)
read -r t2 n2 < <(count 24)
awk -v t1="$t1" -v n1="$n1" -v t2="$t2" -v n2="$n2" -v b="$bench" 'BEGIN {
    printf "%s: %.3fM instructions a message (parse + lint; runs of %d and %d)\n", b, (t2 - t1) / (n2 - n1) / 1e6, n1, n2
}'
