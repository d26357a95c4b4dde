#!/usr/bin/env bash
# Fuzzing: ./scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Runs the cargo-fuzz (libFuzzer) targets of fuzz/ — the workflow parser and compiler,
# the expression compiler, the duration and calendar parsers, and the JSON limits at the
# door — each for SECONDS_PER_TARGET (default 600) on the committed corpus
# (fuzz/corpus/TARGET, which grows as the fuzzer finds new paths: commit it). A crash
# leaves its input in fuzz/artifacts/TARGET and fails the run. Needs the nightly
# toolchain (installed by rustup when missing) and cargo-fuzz (installed when missing).
# Not part of ./scripts/test.sh: it is long and builds with sanitizer instrumentation.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../fuzz"
seconds=${1:-600}
shift || true
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(workflow expression time_formats json_limits)
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
for t in "${targets[@]}"; do
    echo "fuzz.sh: $t for ${seconds}s" >&2
    cargo +nightly fuzz run -O "$t" "corpus/$t" -- \
        -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
done
