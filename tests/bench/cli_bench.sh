#!/usr/bin/env bash
# Copyright the @ocycle/core authors. MIT license.
#
# The `ocycle` command line beside GNU parallel --pipe on the same input, in
# two workloads, two at a time (JOBS):
#   - 1 MiB blocks of MIB MiB through `wc -c` (ocycle also with a --module
#     handler that does the same in its process and thread pools): the
#     outputs must add up to the input's size;
#   - 8 KiB blocks (--clip: exactly 8 KiB) of CAT_MIB MiB through `cat`: per
#     command costs, the output must be as long as the input.
# Prints MB/s and milliseconds per command (best of RUNS) and the ratios.
#
# With BASE=<other checkouts of this repository> (worktrees of older commits,
# outside this one; several separated by spaces), it also runs their `ocycle
# --exec` on both workloads, alternating with this tree's round by round
# (the order rotating each round), and prints each and the ratio this /
# BASE: the mark is at least 1.0x. Needs Debian's `parallel` (apt-get install
# parallel).
#
#   tests/bench/cli_bench.sh            # 256 MiB and 16 MiB, 3 runs each
#   MIB=64 RUNS=1 tests/bench/cli_bench.sh
#   git worktree add /tmp/exec_base f3d7ac7
#   BASE=/tmp/exec_base MIB=128 RUNS=5 tests/bench/cli_bench.sh
#   BASE="/tmp/exec_base /tmp/exec_main" tests/bench/cli_bench.sh   # two older trees
#   ONLY=exec BASE=/tmp/exec_base tests/bench/cli_bench.sh   # --exec only, no parallel
set -euo pipefail

MIB=${MIB:-256}
CAT_MIB=${CAT_MIB:-16}
RUNS=${RUNS:-3}
JOBS=${JOBS:-2}
BASE=${BASE:-}
ONLY=${ONLY:-}
root=$(cd "$(dirname "$0")/../.." && pwd)
if [ "$ONLY" != exec ]; then
  command -v parallel >/dev/null || { echo "cli_bench: GNU parallel is not installed (apt-get install parallel)" >&2; exit 1; }
fi
bases=()
for tree in $BASE; do
  tree=$(cd "$tree" && pwd)
  [ -f "$tree/cli.ts" ] || { echo "cli_bench: BASE tree $tree has no cli.ts" >&2; exit 1; }
  [ "$tree" != "$root" ] || { echo "cli_bench: BASE is this tree" >&2; exit 1; }
  bases+=("$tree")
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
big="$tmp/big.bin"
small="$tmp/small.bin"
head -c "$((MIB * 1024 * 1024))" /dev/urandom >"$big"
head -c "$((CAT_MIB * 1024 * 1024))" /dev/urandom >"$small"
big_bytes=$(stat -c %s "$big")
small_bytes=$(stat -c %s "$small")
big_chunks=$((big_bytes / (1024 * 1024)))
small_chunks=$((small_bytes / 8192))

# ocycle TREE ARGS...: that checkout's command line.
ocycle() {
  local tree=$1
  shift
  deno run -A --no-lock --import-map="$tree/.ci/import_map.json" "$tree/cli.ts" "$@"
}
label() { git -C "$1" log -1 --format=%h 2>/dev/null || echo "$1"; }
# Warm Deno's cache.
ocycle "$root" -q -s 1MiB --exec "wc -c" <"$small" >/dev/null
for tree in ${bases[@]+"${bases[@]}"}; do ocycle "$tree" -q -s 1MiB --exec "wc -c" <"$small" >/dev/null; done

# Checks: the byte counts `wc -c` wrote add up to the input's size; `cat`
# wrote as many bytes as it read.
sums_to() { [ "$(awk '{ s += $1 } END { print s }' "$tmp/out")" = "$1" ]; }
is_long() { [ "$(stat -c %s "$tmp/out")" = "$1" ]; }

# once CHECK BYTES INPUT CMD...: runs CMD once on INPUT, checks its output
# with CHECK BYTES, prints the seconds it took.
once() {
  local check=$1 bytes=$2 input=$3
  shift 3
  local start end
  start=$(date +%s.%N)
  "$@" <"$input" >"$tmp/out"
  end=$(date +%s.%N)
  if ! "$check" "$bytes"; then
    echo "cli_bench: $* failed its check ($check $bytes)" >&2
    exit 1
  fi
  echo "$end - $start" | bc -l
}

min() { echo "if ($1 < $2) $1 else $2" | bc -l; }
mbs() { printf '%.1f' "$(echo "$1 / 1000000 / $2" | bc -l)"; }
ms() { printf '%.3f' "$(echo "$2 * 1000 / $1" | bc -l)"; }
ratio() { printf '%.2f' "$(echo "$1 / $2" | bc -l)"; }

# measure CHECK BYTES INPUT CMD...: the best of RUNS runs, in seconds.
measure() {
  local best=1000000
  for _ in $(seq "$RUNS"); do
    best=$(min "$best" "$(once "$@")")
  done
  echo "$best"
}

# versus NAME CHECK BYTES INPUT CHUNKS ARGS...: this tree's and each BASE
# tree's `ocycle ARGS`, round by round, the order rotating each round;
# prints each and the ratio this / BASE.
versus() {
  local name=$1 check=$2 bytes=$3 input=$4 chunks=$5
  shift 5
  local trees=("$root" ${bases[@]+"${bases[@]}"}) best=() round i k n=$((${#bases[@]} + 1))
  for i in $(seq 0 $((n - 1))); do best[i]=1000000; done
  for round in $(seq "$RUNS"); do
    for k in $(seq 0 $((n - 1))); do
      i=$(((k + round) % n))
      best[i]=$(min "${best[i]}" "$(once "$check" "$bytes" "$input" ocycle "${trees[i]}" "$@")")
    done
  done
  printf '%s, best of %s, alternating:\n' "$name" "$RUNS"
  for i in $(seq 1 $((n - 1))) 0; do
    printf '  %s %-10s %8s MB/s  %7s ms/command\n' "$([ "$i" = 0 ] && echo this || echo BASE)" "$(label "${trees[i]}")" "$(mbs "$bytes" "${best[i]}")" "$(ms "$chunks" "${best[i]}")"
  done
  for i in $(seq 1 $((n - 1))); do
    local r
    r=$(ratio "${best[i]}" "${best[0]}")
    printf '  ratio this / %s: %sx (%s)\n' "$(label "${trees[i]}")" "$r" "$(echo "$r >= 1" | bc -l | sed 's/1/mark met: at least as fast/;s/0/mark MISSED: slower/')"
  done
}

echo "inputs: $MIB MiB (1 MiB blocks, wc -c) and $CAT_MIB MiB (8 KiB blocks, cat) of random bytes, $JOBS at a time"
if [ ${#bases[@]} -gt 0 ]; then
  versus "1 MiB blocks, wc -c: ocycle -s 1MiB -j $JOBS --exec 'wc -c'" \
    sums_to "$big_bytes" "$big" "$big_chunks" -q -s 1MiB -j "$JOBS" --exec "wc -c"
  versus "8 KiB blocks, cat: ocycle -s 8KiB --clip -j $JOBS --exec cat" \
    is_long "$small_bytes" "$small" "$small_chunks" -q -s 8KiB --clip -j "$JOBS" --exec cat
fi
[ "$ONLY" != exec ] || exit 0

echo "this tree alone beside GNU parallel, best of $RUNS:"
o=$(measure sums_to "$big_bytes" "$big" ocycle "$root" -q -s 1MiB -j "$JOBS" --exec "wc -c")
echo "ocycle --size 1MiB -j $JOBS --exec 'wc -c'              $(mbs "$big_bytes" "$o") MB/s  $(ms "$big_chunks" "$o") ms/command"
ok=$(measure sums_to "$big_bytes" "$big" ocycle "$root" -q -s 1MiB --clip -k -j "$JOBS" --exec "wc -c")
echo "ocycle --size 1MiB --clip -k -j $JOBS --exec 'wc -c'    $(mbs "$big_bytes" "$ok") MB/s"
mp=$(measure sums_to "$big_bytes" "$big" ocycle "$root" -q -s 1MiB -j "$JOBS" --mode process --module "$root/tests/bench/cli_count.ts")
echo "ocycle --size 1MiB -j $JOBS --module (process pool)    $(mbs "$big_bytes" "$mp") MB/s"
mt=$(measure sums_to "$big_bytes" "$big" ocycle "$root" -q -s 1MiB -j "$JOBS" --mode thread --module "$root/tests/bench/cli_count.ts")
echo "ocycle --size 1MiB -j $JOBS --module (thread pool)     $(mbs "$big_bytes" "$mt") MB/s"
oc=$(measure is_long "$small_bytes" "$small" ocycle "$root" -q -s 8KiB --clip -j "$JOBS" --exec cat)
echo "ocycle --size 8KiB --clip -j $JOBS --exec cat           $(mbs "$small_bytes" "$oc") MB/s  $(ms "$small_chunks" "$oc") ms/command"
p=$(measure sums_to "$big_bytes" "$big" parallel --will-cite --pipe --block 1M -j "$JOBS" wc -c)
echo "parallel --pipe --block 1M -j$JOBS wc -c                $(mbs "$big_bytes" "$p") MB/s  $(ms "$big_chunks" "$p") ms/command"
pk=$(measure sums_to "$big_bytes" "$big" parallel --will-cite --pipe --block 1M -k -j "$JOBS" wc -c)
echo "parallel --pipe --block 1M -k -j$JOBS wc -c             $(mbs "$big_bytes" "$pk") MB/s"
# --recend '' cuts at byte counts, not at newlines, as ocycle does.
pc=$(measure is_long "$small_bytes" "$small" parallel --will-cite --pipe --recend '' --block 8k -j "$JOBS" cat)
echo "parallel --pipe --recend '' --block 8k -j$JOBS cat      $(mbs "$small_bytes" "$pc") MB/s  $(ms "$small_chunks" "$pc") ms/command"
printf 'ratio ocycle / parallel: %.1fx (--exec wc -c, unordered), %.1fx (--exec wc -c, --keep-order / -k), %.1fx (--module process), %.1fx (--module thread), %.1fx (--exec cat, 8 KiB)\n' \
  "$(echo "$p / $o" | bc -l)" "$(echo "$pk / $ok" | bc -l)" "$(echo "$p / $mp" | bc -l)" "$(echo "$p / $mt" | bc -l)" "$(echo "$pc / $oc" | bc -l)"
