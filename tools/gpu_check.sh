#!/usr/bin/env bash
# One prepared GPU check: trains a short run with --strategy=mirrored on every visible GPU,
# once in float32 and once with --mixed_precision, and prints steps/s and the metrics.
#   bash tools/gpu_check.sh            (OUT=/tmp/gpu_check PYTHON=python by default)
# Needs TensorFlow with CUDA (pip install -e '.[gpu]'). The images issue will add an MNIST run;
# until then it trains the moons config, which exercises the same code paths.
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
