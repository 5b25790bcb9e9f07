#!/usr/bin/env bash
# One prepared GPU check: trains a short run with --strategy=mirrored on every visible GPU,
# once in float32 and once with --mixed_precision, and prints steps/s and the metrics.
#   bash tools/gpu_check.sh            (OUT=/tmp/gpu_check PYTHON=python by default)
# Needs TensorFlow with CUDA (pip install -e '.[gpu]'). Trains moons (the XLA MLP path) and, when
# MNIST_DIR names a folder of MNIST IDX files, 1000 steps of configs/mnist.cfg (the conv E path).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
OUT=${OUT:-/tmp/gpu_check}
rm -rf "$OUT" && mkdir -p "$OUT"
"$PYTHON" -c "import tensorflow as tf; gpus = tf.config.list_physical_devices('GPU'); print('GPUs:', gpus); assert gpus, 'no GPU visible'"
for precision in float32 mixed; do
  extra=()
  [ "$precision" = mixed ] && extra=(--mixed_precision)
  start=$(date +%s)
  "$PYTHON" -m tfganebm.train --flagfile configs/moons.cfg --workdir "$OUT/$precision" \
    --strategy=mirrored --train_steps=3000 --log_every=500 --checkpoint_every=1000 \
    "${extra[@]}" > "$OUT/$precision.log" 2>&1
  echo "== $precision: $(( $(date +%s) - start )) s in all"
  grep -o 'step [0-9]*/[0-9]* ([0-9.]* steps/s)' "$OUT/$precision.log" | tail -3
  "$PYTHON" tools/compare_runs.py "$OUT/$precision"
done
if [ -n "${MNIST_DIR:-}" ]; then
  for jit in nojit_compile jit_compile; do
    start=$(date +%s)
    "$PYTHON" -m tfganebm.train --flagfile configs/mnist.cfg --workdir "$OUT/mnist_$jit" \
      --data_dir="$MNIST_DIR" --classifier_dir="$OUT/cache" --strategy=mirrored --"$jit" \
      --train_steps=1000 --log_every=250 --checkpoint_every=1000 > "$OUT/mnist_$jit.log" 2>&1
    echo "== mnist --$jit: $(( $(date +%s) - start )) s in all"
    grep -o 'step [0-9]*/[0-9]* ([0-9.]* steps/s)' "$OUT/mnist_$jit.log" | tail -2
    "$PYTHON" tools/compare_runs.py "$OUT/mnist_$jit"
  done
fi
