#!/usr/bin/env bash
# Run every fuzz target for a bounded time (default 60 s each), growing the
# corpus under fuzz/corpus/<target>. Needs the nightly toolchain and
# cargo-fuzz (`cargo install cargo-fuzz`).
#   fuzz/run.sh            # 60 s per target
#   fuzz/run.sh 600        # 10 minutes per target
# The targets are one-liners over `grapevine_fuzz_entries` (fuzz/entries),
# whose corpus replay runs in CI on stable Rust. Well-formed seed inputs:
#   cargo run -p grapevine-fuzz-entries --example seeds
set -euo pipefail
secs="${1:-60}"
cd "$(dirname "$0")/.."
for t in record gossip frames handshake storage_request share_file capability listing; do
    mkdir -p "fuzz/corpus/$t"
    echo "== $t ($secs s)"
    cargo +nightly fuzz run "$t" "fuzz/corpus/$t" -- -max_total_time="$secs" -max_len=4096 2>&1 |
        grep -E "^#[0-9]+[[:space:]]+DONE|ERROR|panicked|SUMMARY" || true
    if [ -d "fuzz/artifacts/$t" ] && [ -n "$(ls -A "fuzz/artifacts/$t" 2>/dev/null)" ]; then
        echo "crash artifacts in fuzz/artifacts/$t" >&2
        exit 1
    fi
done
echo "all fuzz targets ran ${secs}s without a crash"
