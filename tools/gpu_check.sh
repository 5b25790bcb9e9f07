#!/usr/bin/env bash
# The prepared accelerator check: the strategy x precision matrix on every visible GPU, for
# moons (configs/moons.cfg, the XLA MLP path) and MNIST (configs/mnist.cfg with --train_steps
# cut, the conv E path), each run followed by sample, export and the LiteRT device runner.
# Prints one table: steps/s, images/s per replica, peak GPU memory, the metrics, and whether
# sample / export / device worked; then the steps/s of XLA off and on under mirrored.
#   bash tools/gpu_check.sh                  (a new folder from mktemp; PYTHON=python)
#   OUT=DIR MNIST_DIR=DIR bash tools/gpu_check.sh
# OUT must not exist or be empty: this script deletes nothing. MNIST runs when MNIST_DIR names
# a folder of MNIST IDX files. Needs TensorFlow with CUDA (pip install -e '.[gpu,device]').
# Timed to fit in 8 minutes on one GPU (moons 2000 steps, MNIST 600 steps per cell).
set -euo pipefail
# Paths given relative to the caller's folder, before the cd.
[ -n "${OUT:-}" ] && OUT=$(realpath -m "$OUT")
if [ -n "${MNIST_DIR:-}" ]; then
  MNIST_DIR=$(realpath -m "$MNIST_DIR")
  [ -d "$MNIST_DIR" ] || { echo "error: MNIST_DIR=$MNIST_DIR is not a folder" >&2; exit 2; }
fi
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
LIMIT=${LIMIT:-300}  # seconds per command; a stuck run must not eat the device time
if [ -z "${OUT:-}" ]; then
  OUT=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
elif [ -e "$OUT" ] && [ -n "$(ls -A "$OUT")" ]; then
  echo "error: OUT=$OUT is not empty; name a new folder (this script deletes nothing)" >&2
  exit 2
fi
mkdir -p "$OUT"
export TF_FORCE_GPU_ALLOW_GROWTH=true  # two local workers share one GPU
# GPU_CHECK_ALLOW_CPU=1 MOONS_STEPS=200 tries the script itself on a CPU.
"$PYTHON" -c "import os, tensorflow as tf; gpus = tf.config.list_physical_devices('GPU'); print('GPUs:', gpus); assert gpus or os.environ.get('GPU_CHECK_ALLOW_CPU'), 'no GPU visible'"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

port() { "$PYTHON" -c "import socket; s = socket.socket(); s.bind(('localhost', 0)); print(s.getsockname()[1])"; }

# train NAME STRATEGY PRECISION FLAGS...: trains in $OUT/NAME, then samples, exports and runs
# the device runner; appends a line to $OUT/results.tsv.
cell() {
  local name=$1 strategy=$2 precision=$3; shift 3
  local dir="$OUT/$name" extra=() start rc=0 sample=fail export=fail device=fail
  [ "$precision" = mixed ] && extra+=(--mixed_precision)
  extra+=(--strategy="$strategy")
  start=$(date +%s)
  if [ "$strategy" = multi_worker ]; then
    local p0 p1 pids=() pid; p0=$(port); p1=$(port)
    for index in 1 0; do
      TF_CONFIG="{\"cluster\": {\"worker\": [\"localhost:$p0\", \"localhost:$p1\"]}, \"task\": {\"type\": \"worker\", \"index\": $index}}" \
        timeout -k 10 "$LIMIT" "$PYTHON" -m tfganebm.train "$@" --workdir "$dir" "${extra[@]}" \
        > "$dir.worker$index.log" 2>&1 &
      pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid" || rc=$?; done
    cp "$dir.worker0.log" "$dir.log"
  else
    timeout -k 10 "$LIMIT" "$PYTHON" -m tfganebm.train "$@" --workdir "$dir" "${extra[@]}" \
      > "$dir.log" 2>&1 || rc=$?
  fi
  local seconds=$(( $(date +%s) - start ))
  if [ "$rc" = 0 ]; then
    timeout -k 10 "$LIMIT" "$PYTHON" -m tfganebm.sample --workdir "$dir" --out "$dir/samples" --num_samples 256 \
      > "$dir.sample.log" 2>&1 && sample=ok
    timeout -k 10 "$LIMIT" "$PYTHON" -m tfganebm.export --workdir "$dir" --out "$dir/export" > "$dir.export.log" 2>&1 \
      && export=ok
    [ "$export" = ok ] && timeout -k 10 "$LIMIT" "$PYTHON" export/sample_litert.py "$dir/export/model.tflite" \
      --num_samples 64 --out "$dir/device" > "$dir.device.log" 2>&1 && device=ok
  fi
  "$PYTHON" - "$dir" "$name" "$strategy" "$precision" "$rc" "$seconds" "$sample" "$export" "$device" \
    >> "$OUT/results.tsv" <<'PY' || printf '%s\ttable error (see %s.log)\n' "$name" "$dir" >> "$OUT/results.tsv"
import json, os, re, sys
d, name, strategy, precision, rc, seconds, sample, export, device = sys.argv[1:]
log = open(d + '.log').read()
rates = [float(r) for r in re.findall(r'step \d+/\d+ \(([0-9.]+) steps/s\)', log)]
rate = max(rates[1:] or rates or [0.0])  # the first window includes tracing
replicas = re.findall(r'training with (\d+) replicas', log)
flags = open(os.path.join(d, 'flags.txt')).read() if os.path.exists(os.path.join(d, 'flags.txt')) else ''
batch = int(re.search(r'--batch_size=(\d+)', flags).group(1)) if flags else 0
peaks = [float(p) for p in re.findall(r'peak memory of \S+: (\d+) MiB', log)]
replica_count = int(replicas[-1]) if replicas else max(len(peaks), 1)
metric = '-'
path = os.path.join(d, 'metrics.json')
if os.path.exists(path):
  m = json.load(open(path))
  key = 'fid' if 'fid' in m.get('generator', {}) else 'sliced_wasserstein'
  fmt = lambda v: '-' if v is None else f'{v:.3g}'
  metric = (f"{key} G {fmt(m.get('generator', {}).get(key))} / "
            f"G+L {fmt(m.get('generator_langevin', {}).get(key))}")
print('\t'.join([name, strategy, precision, 'ok' if rc == '0' else f'exit {rc}', seconds,
                 f'{rate:.1f}', f'{rate * batch / replica_count:.0f}',
                 f'{max(peaks):.0f}' if peaks else '-', metric, sample, export, device]))
PY
  echo "== $name: train exit $rc in ${seconds}s; sample $sample, export $export, device $device"
}

printf 'run\tstrategy\tprecision\ttrain\tseconds\tsteps/s\timages/s/replica\tpeak MiB\tmetrics\tsample\texport\tdevice\n' > "$OUT/results.tsv"
MOONS=(--flagfile configs/moons.cfg --train_steps="${MOONS_STEPS:-2000}" --eval_num_samples=1000 --langevin_steps=300)
for strategy in default mirrored multi_worker; do
  for precision in float32 mixed; do
    cell "moons_${strategy}_$precision" "$strategy" "$precision" "${MOONS[@]}"
  done
done
if [ -n "${MNIST_DIR:-}" ]; then
  MNIST=(--flagfile configs/mnist.cfg --data_dir="$MNIST_DIR" --classifier_dir="$OUT/cache"
         --train_steps=600 --checkpoint_every=200 --eval_num_samples=2000)
  for strategy in default mirrored; do
    for precision in float32 mixed; do
      cell "mnist_${strategy}_$precision" "$strategy" "$precision" "${MNIST[@]}"
    done
  done
fi
# XLA under the mirrored strategy (off in training): what one GPU would gain, one process each.
timeout "$LIMIT" "$PYTHON" tools/benchmark_strategies.py --flagfile configs/moons.cfg \
  --steps "${XLA_STEPS:-1000}" --modes default,default_noxla,mirrored1,mirrored1_xla \
  > "$OUT/xla_mirrored.txt" 2>&1 || echo "(the XLA measurement failed: $OUT/xla_mirrored.txt)"
echo
column -t -s $'\t' "$OUT/results.tsv" 2>/dev/null || cat "$OUT/results.tsv"
echo
tail -6 "$OUT/xla_mirrored.txt" || true
echo "(logs and runs in $OUT)"
