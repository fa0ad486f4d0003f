#!/usr/bin/env bash
# CI's fuzz smoke run (docs/testing.md, Fuzzing): every libFuzzer target over its seed corpus and
# the fuzz regression inputs (tests/data/fuzz-regressions/<target>/), then new inputs up to RUNS
# executions each (default 1000: a few thousand in all), from a fixed seed, through
# fuzz/run_fuzz.py. Any crash, sanitizer report, leak, hang or non-InputError exception in
# divscope's code fails the test; its input is kept in CORPUS_DIR/../fuzz-artifacts/.
#
# usage: fuzz/smoke.sh BUILD_FUZZ_DIR CORPUS_DIR [RUNS]
#   BUILD_FUZZ_DIR  the fuzz/ directory of a -DDIVSCOPE_FUZZ=ON build (fuzz_model, ...)
#   CORPUS_DIR      the seed corpora (made here by fuzz/make_corpus.py when missing)
set -euo pipefail
bin=$1
corpus=$2
runs=${3:-1000}
here=$(cd "$(dirname "$0")" && pwd)
regressions="$here/../tests/data/fuzz-regressions"
if [ ! -f "$corpus/.done" ]; then
  /usr/bin/python3 "$here/make_corpus.py" "$corpus" "$bin/../divscope"
  touch "$corpus/.done"
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0
for t in model recording onnx json; do
  mkdir -p "$corpus/$t" "$regressions/$t"
  /usr/bin/python3 "$here/run_fuzz.py" "$bin/fuzz_$t" "$work/$t" "$corpus/$t" "$regressions/$t" \
    --runs "$runs" --timeout 5 --artifacts "$corpus/../fuzz-artifacts" || status=1
done
exit $status
