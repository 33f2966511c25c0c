#!/usr/bin/env bash
# Copyright the @ocycle/core authors. MIT license.
#
# The `ocycle` command line beside GNU parallel --pipe on the same input: both
# cut stdin into 1 MiB blocks and run `wc -c` on each, two at a time (ocycle
# also with a --module handler that does the same in its process and thread
# pools). Prints
# MB/s for each (best of RUNS), checks that both counted every byte, and the
# ratio. Needs Debian's `parallel` (apt-get install parallel).
#
#   tests/bench/cli_bench.sh            # 256 MiB, 3 runs each
#   MIB=64 RUNS=1 tests/bench/cli_bench.sh
set -euo pipefail

MIB=${MIB:-256}
RUNS=${RUNS:-3}
JOBS=${JOBS:-2}
root=$(cd "$(dirname "$0")/../.." && pwd)
command -v parallel >/dev/null || { echo "cli_bench: GNU parallel is not installed (apt-get install parallel)" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
input="$tmp/input.bin"
head -c "$((MIB * 1024 * 1024))" /dev/urandom >"$input"
bytes=$(stat -c %s "$input")

ocycle() { deno run -A --no-lock --import-map="$root/.ci/import_map.json" "$root/cli.ts" "$@"; }
ocycle -q -s 1MiB --exec "wc -c" <"$input" >/dev/null # warm Deno's cache

# Runs "$@" RUNS times on the input; prints the best MB/s. Each run's outputs
# (one byte count per block) must add up to the input's size.
measure() {
  local best=0
  for _ in $(seq "$RUNS"); do
    local start end total rate
    start=$(date +%s.%N)
    "$@" <"$input" >"$tmp/out"
    end=$(date +%s.%N)
    total=$(awk '{ s += $1 } END { print s }' "$tmp/out")
    if [ "$total" != "$bytes" ]; then
      echo "cli_bench: $* counted $total bytes of $bytes" >&2
      exit 1
    fi
    rate=$(echo "$bytes / 1000000 / ($end - $start)" | bc -l)
    best=$(echo "if ($rate > $best) $rate else $best" | bc -l)
  done
  printf '%.1f' "$best"
}

echo "input: $MIB MiB of random bytes, 1 MiB blocks, wc -c on each, $JOBS at a time, best of $RUNS"
o=$(measure ocycle -q -s 1MiB -j "$JOBS" --exec "wc -c")
echo "ocycle --size 1MiB -j $JOBS --exec 'wc -c'              $o MB/s"
ok=$(measure ocycle -q -s 1MiB --clip -k -j "$JOBS" --exec "wc -c")
echo "ocycle --size 1MiB --clip -k -j $JOBS --exec 'wc -c'    $ok MB/s"
mp=$(measure ocycle -q -s 1MiB -j "$JOBS" --mode process --module "$root/tests/bench/cli_count.ts")
echo "ocycle --size 1MiB -j $JOBS --module (process pool)    $mp MB/s"
mt=$(measure ocycle -q -s 1MiB -j "$JOBS" --mode thread --module "$root/tests/bench/cli_count.ts")
echo "ocycle --size 1MiB -j $JOBS --module (thread pool)     $mt MB/s"
p=$(measure parallel --will-cite --pipe --block 1M -j "$JOBS" wc -c)
echo "parallel --pipe --block 1M -j$JOBS wc -c                $p MB/s"
pk=$(measure parallel --will-cite --pipe --block 1M -k -j "$JOBS" wc -c)
echo "parallel --pipe --block 1M -k -j$JOBS wc -c             $pk MB/s"
printf 'ratio ocycle / parallel: %.1fx (--exec, unordered), %.1fx (--exec, --keep-order / -k), %.1fx (--module process), %.1fx (--module thread)\n' \
  "$(echo "$o / $p" | bc -l)" "$(echo "$ok / $pk" | bc -l)" "$(echo "$mp / $p" | bc -l)" "$(echo "$mt / $p" | bc -l)"
