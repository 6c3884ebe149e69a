#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ (or the ones named) for SECONDS each, one after the
# other, and prints libFuzzer's final stats per target.
#
#   tools/fuzz.sh [SECONDS] [TARGET...]      # SECONDS defaults to 60
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). libFuzzer needs nightly compiler flags:
# a nightly toolchain is used when installed, else the stable one with
# RUSTC_BOOTSTRAP=1. Corpora grow in fuzz/corpus/TARGET (seeded from fuzz/seeds/TARGET),
# crashes land in fuzz/artifacts/TARGET; logs in fuzz/logs/TARGET.log. Exits non-zero
# if any target found a crash. Inputs up to 16 KiB (the HTTP head limit is 8 KiB).
# CARGO_TARGET_DIR, if set, is used for the build.
set -euo pipefail

cd "$(dirname "$0")/../fuzz"
secs="${1:-60}"
shift || true
case "$secs" in
  ''|*[!0-9]*) echo "usage: tools/fuzz.sh [SECONDS] [TARGET...]" >&2; exit 2 ;;
esac

if ! cargo fuzz --help >/dev/null 2>&1; then
  echo "cargo-fuzz is missing: cargo install cargo-fuzz" >&2
  exit 2
fi
if rustup run nightly rustc --version >/dev/null 2>&1; then
  fuzz=(cargo +nightly fuzz)
else
  export RUSTC_BOOTSTRAP=1
  fuzz=(cargo fuzz)
fi
target_dir=()
if [ -n "${CARGO_TARGET_DIR:-}" ]; then
  target_dir=(--target-dir "$CARGO_TARGET_DIR/fuzz")
fi

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  targets=()
  for f in fuzz_targets/*.rs; do
    targets+=("$(basename "$f" .rs)")
  done
fi

mkdir -p logs
failed=()
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  if [ -d "seeds/$t" ]; then
    cp -n "seeds/$t"/* "corpus/$t"/ 2>/dev/null || true
  fi
  echo "== $t: ${secs}s"
  if "${fuzz[@]}" run "${target_dir[@]}" "$t" "corpus/$t" -- \
      -max_total_time="$secs" -max_len=16384 -print_final_stats=1 >"logs/$t.log" 2>&1; then
    status=ok
  else
    status=FAILED
    failed+=("$t")
  fi
  runs=$(grep -o 'Done [0-9]* runs in [0-9]* second' "logs/$t.log" | tail -1 || true)
  final=$(grep -o 'DONE .*' "logs/$t.log" | tail -1 || true)
  echo "   $status: ${runs:-no summary (see fuzz/logs/$t.log)}; corpus dir $(find "corpus/$t" -type f | wc -l) files"
  [ -z "$final" ] || echo "   $final"
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "crashes or errors in: ${failed[*]} (fuzz/artifacts/, fuzz/logs/)" >&2
  exit 1
fi
