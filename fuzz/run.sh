#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60) and fails on the first crash, leak,
# timeout (an input taking over 30 s: a loop) or out-of-memory (over 2 GiB in all, or one
# allocation over 512 MiB: a size read from disk and not checked). Installs cargo-fuzz and
# the nightly toolchain it needs when they are missing. Inputs may grow to 4 MiB, the
# size of the largest seeds (real volumes made by fuzz/make-seeds.sh).
#
#   fuzz/run.sh [SECONDS] [TARGET...]
#
# New inputs go to fuzz/target/corpus/TARGET (not committed); the seeds fuzz/corpus/TARGET
# are read, never written. A failing input is left in fuzz/artifacts/TARGET; copy it to
# tests/fuzz-regressions/TARGET/ with the fix.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
secs=${1:-60}
shift || true
targets=("$@")
((${#targets[@]})) || targets=(container chain partition used_ntfs used_ext used_fat used_exfat vfs_walk vfs_cat catalog)

[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
if ! rustup toolchain list | grep -q '^nightly'; then
  echo "==> installing the nightly toolchain (cargo-fuzz needs it for the sanitizer)"
  rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "==> installing cargo-fuzz"
  cargo install --locked cargo-fuzz
fi

echo "==> building fuzz targets"
cargo +nightly fuzz build
for t in "${targets[@]}"; do
  echo "==> fuzzing $t for ${secs}s"
  mkdir -p "target/corpus/$t"
  log="target/fuzz-$t.log"
  if cargo +nightly fuzz run "$t" "target/corpus/$t" "corpus/$t" -- \
    -max_total_time="$secs" -timeout=30 -rss_limit_mb=2048 -malloc_limit_mb=512 -max_len=4194304 \
    -print_final_stats=1 >"$log" 2>&1; then
    grep -E '^stat::(number_of_executed_units|peak_rss_mb)|^#[0-9]+ +DONE' "$log" | sed 's/^/    /'
  else
    tail -n 60 "$log" | cut -c1-400 >&2
    echo "error: fuzz target $t failed; the input is in fuzz/artifacts/$t" >&2
    exit 1
  fi
done
echo "==> fuzzing: no failures"
