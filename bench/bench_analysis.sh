#!/usr/bin/env bash
# The whole CPU analysis against its anchors (STYLE 11), printed as Markdown tables:
#  (a) time: the full analysis (5 modes, chained + isolated + stats) over one FP64 reference
#      pass on the same recording (bench_reference_pass; target <= 15x), on data/cnn,
#      data/transformer and larger generated recordings;
#  (b) memory: peak RSS of `divscope run --backend cpu` on a recording with B and with 10 x B
#      batches of the same model (it must not grow with the batch count: batches stream).
#
#   bench/bench_analysis.sh [BUILD_DIR]        (default: build; needs divscope and
#                                              bench/bench_reference_pass built there)
# Generated recordings go to $DIVSCOPE_BENCH_TMP (default /tmp/divscope-bench).
# Results: bench/results/cpu-analysis-*.md.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
tmp=${DIVSCOPE_BENCH_TMP:-/tmp/divscope-bench}
divscope=$build/divscope
refpass=$build/bench/bench_reference_pass
python=/usr/bin/python3
gnu_time=/usr/bin/time
for f in "$divscope" "$refpass" "$python" "$gnu_time"; do
  [[ -x $f ]] || { echo "bench_analysis.sh: missing $f" >&2; exit 2; }
done
mkdir -p "$tmp"

# gen NAME BATCHES BATCH_SIZE: the example model of data/make_examples.py (same weights) with
# BATCHES fresh batches of BATCH_SIZE samples, activations recorded, into $tmp.
gen() {
  local out=$tmp/$1-$2x$3.recording.h5
  [[ -f $out ]] && return 0
  "$python" - "$here" "$@" "$tmp" <<'EOF'
import os, sys
here, name, nb, bs, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
sys.path.insert(0, os.path.join(here, "data"))
import torch
import make_examples as mx
import capture_torch as ct
m, batches, names = mx.EXAMPLES[name]()
m.eval()
torch.manual_seed(7)
def batch():
    if name == "transformer":   # integer token/position inputs: repeat the example batch
        return tuple(t.repeat(bs // t.shape[0] + 1, *[1] * (t.dim() - 1))[:bs] for t in batches[0])
    return tuple(torch.randn(bs, *t.shape[1:]) for t in batches[0])
ct.capture(m, [batch() for _ in range(nb)], f"{out}/{name}.model.h5",
           f"{out}/{name}-{nb}x{bs}.recording.h5", input_names=names,
           record_activations=True, name=name, source="bench/bench_analysis.sh")
EOF
}

gen cnn 4 32
gen cnn 40 32
gen transformer 4 32
gen transformer 40 32

echo "## (a) full analysis vs one FP64 reference pass (best of 3)"
echo
echo "| recording | batches x size | reference pass s | full analysis s | ratio |"
echo "|---|---|---|---|---|"
time_pair() {   # model recording
  local out
  out=$("$refpass" "$1" "$2" 3 2>/dev/null)
  local shape ref full ratio
  shape=$(sed -n 's/^recording .* (\([0-9]*\) batches, \([0-9]*\) samples)$/\1 batches, \2 samples/p' <<<"$out")
  ref=$(awk '/^reference pass/ {print $3}' <<<"$out")
  full=$(awk '/^full analysis/ {print $3}' <<<"$out")
  ratio=$(awk '/^ratio/ {print $2}' <<<"$out")
  echo "| ${2#"$here"/} | $shape | $ref | $full | ${ratio}x |"
}
time_pair "$here/data/cnn.model.h5" "$here/data/cnn.recording.h5"
time_pair "$here/data/transformer.model.h5" "$here/data/transformer.recording.h5"
time_pair "$tmp/cnn.model.h5" "$tmp/cnn-40x32.recording.h5"
time_pair "$tmp/transformer.model.h5" "$tmp/transformer-40x32.recording.h5"

echo
echo "## (b) peak RSS of divscope run --backend cpu --quiet (GNU time -v)"
echo
echo "| recording | batches x size | file MiB | wall s | peak RSS MiB |"
echo "|---|---|---|---|---|"
rss() {   # model recording
  local log=$tmp/time.log
  # Exit status 1 (a divergence) is a normal outcome here; only the measurement matters.
  "$gnu_time" -v -o "$log" "$divscope" run --model "$1" --recording "$2" --backend cpu --quiet \
    >/dev/null 2>&1 || [[ $? -le 1 ]]
  local kb wall mib name
  kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$log")
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$log")
  mib=$(du -m "$2" | cut -f1)
  name=$(basename "$2" .recording.h5)
  echo "| $name | ${name##*-} | $mib | $wall | $(awk -v k="$kb" 'BEGIN {printf "%.1f", k / 1024}') |"
}
rss "$tmp/cnn.model.h5" "$tmp/cnn-4x32.recording.h5"
rss "$tmp/cnn.model.h5" "$tmp/cnn-40x32.recording.h5"
rss "$tmp/transformer.model.h5" "$tmp/transformer-4x32.recording.h5"
rss "$tmp/transformer.model.h5" "$tmp/transformer-40x32.recording.h5"
