#!/usr/bin/env bash
# One GPU check of arsm_jax: tests, benchmarks and a short real VAE run.
#
# Here (network, no GPU), once:
#   bash benchmarks/device_check.sh --prepare   # wheels -> .whl/, MNIST -> .device_data/
#   JAX_PLATFORMS=cpu bash benchmarks/device_check.sh --dry-run
# On the GPU machine (no network), with carry [".whl", ".device_data"]:
#   bash benchmarks/device_check.sh             # writes everything under $OUT
#
# Steps, each under its own time limit (80 + 110 + 60 + 50 + 140 s, plus
# about 30 s of setup: the check ends inside 8 minutes), each one's exit code logged and
# the check going on after a failure:
#   0. sizes of what travels (working tree + .whl + .device_data < 64 MiB),
#      installs .whl/*.whl into /tmp/site (pip --no-index --no-deps), checks
#      that JAX sees a GPU (skipped by --dry-run);
#   1. tests that do not depend on the CPU, run on the GPU (conftest.py only
#      sets JAX_PLATFORMS when unset: this script sets it);
#   2. benchmarks/vae_step.py --json (step per estimator, floor, breakdown,
#      dedup table);
#   3. benchmarks/scaling.py --quick;
#   4. benchmarks/rl_rollouts.py (CartPole, vmapped rollouts against loops);
#   5. a 5-epoch ARSM VAE run (configs/vae.py:arsm_nonlinear) on the real
#      MNIST copied into .device_data/tfds.
# Outputs (at most 8 files, as the device tool returns): check.log (sizes,
# environment, per-step exit codes and times), tests.txt, vae_step.json,
# scaling.txt, rl_rollouts.txt, vae_run.txt (the run's log and summary),
# vae_metrics.jsonl.
#
# --dry-run runs every step that needs no GPU for real (sizes, the wheel
# install into a temporary folder, imports, MNIST from .device_data) and the
# rest in a minimal form on the CPU, to check the commands and flags. Before
# --prepare has run it skips the wheel install and reads MNIST from
# $TFDS_DATA_DIR or ../shared/tfds.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MODE=check
case "${1:-}" in
  --dry-run) MODE=dry ;;
  --prepare) MODE=prepare ;;
  "") ;;
  *) echo "usage: $0 [--dry-run | --prepare]" >&2; exit 2 ;;
esac
PY="${PYTHON:-python3}"
DATA=.device_data/tfds

if [[ "$MODE" == prepare ]]; then
  set -e
  bash scripts/device_wheels.sh
  rm -rf .device_data
  mkdir -p "$DATA"
  src=""
  for d in "${TFDS_DATA_DIR:-}" ../shared/tfds ../../shared/tfds; do
    [[ -n "$d" && -d "$d/mnist" ]] && { src=$d; break; }
  done
  [[ -n "$src" ]] || { echo "no mnist under \$TFDS_DATA_DIR or ../shared/tfds" >&2; exit 1; }
  cp -r "$src/mnist" "$DATA/"
  du -sh .whl .device_data
  exit 0
fi

OUT="${OUT:-$ROOT/device_out}"
mkdir -p "$OUT"
LOG="$OUT/check.log"
: > "$LOG"
log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$LOG"; }
FAILED=0
# run NAME LIMIT_S OUTFILE CMD...: one step, its output to OUTFILE.
run() {
  local name=$1 limit=$2 outfile=$3; shift 3
  local t0=$SECONDS rc
  log "step $name (limit ${limit}s): $*"
  if [[ "$outfile" == *.json ]]; then
    # Keep the JSON clean: progress and warnings go to the log.
    timeout --kill-after=10 "$limit" "$@" > "$outfile" 2>> "$LOG"
  else
    timeout --kill-after=10 "$limit" "$@" > "$outfile" 2>&1
  fi
  rc=$?
  log "step $name: rc=$rc in $((SECONDS - t0))s"
  [[ $rc -eq 0 ]] || FAILED=$((FAILED + 1))
}

# 0. What travels, the wheels, the device.
tree_kb=$(git ls-files -z --cached --others --exclude-standard \
          | xargs -0 du -ck 2>/dev/null | tail -1 | cut -f1)
whl_kb=$(du -sk .whl 2>/dev/null | cut -f1); whl_kb=${whl_kb:-0}
data_kb=$(du -sk .device_data 2>/dev/null | cut -f1); data_kb=${data_kb:-0}
total_kb=$((tree_kb + whl_kb + data_kb))
log "sizes: tree ${tree_kb} KiB, .whl ${whl_kb} KiB, .device_data ${data_kb} KiB," \
    "total $((total_kb / 1024)) MiB (limit 64 MiB)"
if (( total_kb > 64 * 1024 )); then
  log "too large to travel"; exit 1
fi
DATA_ABS="$ROOT/$DATA"
if [[ "$MODE" == dry && ( ! -d .whl || ! -d "$DATA/mnist" ) ]]; then
  # Not prepared: check what needs neither (no wheel install; MNIST from
  # where --prepare would copy it).
  if [[ ! -d "$DATA/mnist" ]]; then
    for d in "${TFDS_DATA_DIR:-}" ../shared/tfds ../../shared/tfds; do
      [[ -n "$d" && -d "$d/mnist" ]] && { DATA_ABS=$(cd "$d" && pwd); break; }
    done
  fi
  log "dry run without --prepare: .whl/ $( [[ -d .whl ]] && echo present || echo "absent (install skipped)"), MNIST from $DATA_ABS"
fi
if [[ ! -d "$DATA_ABS/mnist" || ( "$MODE" != dry && ! -d .whl ) ]]; then
  log "missing .whl/ or $DATA/mnist: run $0 --prepare first (with network)"
  exit 1
fi
SITE=/tmp/site
TARGET_FLAGS=()
if [[ "$MODE" == dry ]]; then
  # The wheels are for the GPU machine's Python 3.12: here install them for
  # that interpreter (a check that the set installs), then import the local
  # environment's own copies.
  SITE=$(mktemp -d /tmp/device_site.XXXX)
  TARGET_FLAGS=(--python-version 3.12 --implementation cp --only-binary=:all:
                --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64)
fi
if [[ -d .whl ]]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target "$SITE" "${TARGET_FLAGS[@]}" .whl/*.whl >> "$LOG" 2>&1 || {
    log "wheel install failed"; exit 1; }
  log "installed $(ls .whl/*.whl | wc -l) wheels into $SITE"
fi
if [[ "$MODE" == dry ]]; then
  export PYTHONPATH="$ROOT"
else
  export PYTHONPATH="$SITE:$ROOT"
fi
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3
export TFDS_DATA_DIR="$DATA_ABS"
if [[ "$MODE" == dry ]]; then
  export JAX_PLATFORMS=cpu
else
  export JAX_PLATFORMS="${JAX_PLATFORMS:-cuda}"
  export XLA_PYTHON_CLIENT_PREALLOCATE=false
fi
{
  echo "--- environment"; uname -a; "$PY" --version
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | head -3
  "$PY" - <<'EOF'
import importlib
for name in ("jax", "jaxlib", "flax", "optax", "chex", "orbax.checkpoint",
             "numpy", "ml_collections", "tensorflow_datasets", "array_record",
             "gymnax", "gymnasium", "tensorboardX"):
  try:
    mod = importlib.import_module(name)
    print(f"{name} {getattr(mod, '__version__', '?')} from {mod.__file__}")
  except Exception as e:  # Report every missing package, then go on.
    print(f"{name} MISSING: {type(e).__name__}: {e}")
import jax
print("devices:", jax.devices())
EOF
} >> "$LOG" 2>&1
if [[ "$MODE" != dry ]]; then
  "$PY" -c "import jax, sys; sys.exit(jax.devices()[0].platform != 'gpu')" \
    || { log "JAX sees no GPU: $(grep devices: "$LOG")"; exit 1; }
fi
"$PY" - >> "$LOG" 2>&1 <<'EOF' || { log "MNIST from .device_data failed"; exit 1; }
import os
from arsm_jax import data
x = data.load_split("mnist", "test", os.environ["TFDS_DATA_DIR"])
print("mnist test from", os.environ["TFDS_DATA_DIR"], getattr(x, "shape", type(x)))
EOF
log "setup done (mode $MODE)"

# 1. Tests that hold on any backend: estimators, expectation, dedup, scale.
TESTS=(tests/test_estimators.py tests/test_expectation.py tests/test_batched.py
       tests/test_scale.py)
if [[ "$MODE" == dry ]]; then
  run tests 120 "$OUT/tests.txt" "$PY" -m pytest -q -x -p no:cacheprovider \
    tests/test_batched.py -k "buffer_sizer or bad_arguments"
else
  run tests 80 "$OUT/tests.txt" "$PY" -m pytest -q -p no:cacheprovider \
    -m "not slow" "${TESTS[@]}"
fi

# 2. The VAE step benchmark, one JSON object.
if [[ "$MODE" == dry ]]; then
  run vae_step 300 "$OUT/vae_step.json" "$PY" benchmarks/vae_step.py --json \
    --estimators=arsm --batch_size=20 --iters=1 --rounds=1 --dedup_scales=10 \
    --no-breakdown
else
  run vae_step 110 "$OUT/vae_step.json" "$PY" benchmarks/vae_step.py --json \
    --estimators=reinforce,arsm --rounds=3
fi

# 3. ARSM against C and K.
if [[ "$MODE" == dry ]]; then
  # Cut off after 60 s on this CPU: enough to check the flags and the output.
  run scaling 60 "$OUT/scaling.txt" "$PY" benchmarks/scaling.py --quick \
    --draws=2 --naive_limit_mb=10
else
  run scaling 60 "$OUT/scaling.txt" "$PY" benchmarks/scaling.py --quick
fi

# 4. RL rollouts.
if [[ "$MODE" == dry ]]; then
  run rl_rollouts 180 "$OUT/rl_rollouts.txt" "$PY" benchmarks/rl_rollouts.py \
    --max_steps=20 --max_rollouts=2 --episodes=1 --step_loop_episodes=0
else
  run rl_rollouts 50 "$OUT/rl_rollouts.txt" "$PY" benchmarks/rl_rollouts.py \
    --episodes=10 --step_loop_episodes=1
fi

# 5. Five epochs of the ARSM VAE on real MNIST.
WORK=$(mktemp -d /tmp/device_vae.XXXX)
if [[ "$MODE" == dry ]]; then
  EPOCH_FLAGS=(--config.num_epochs=1 --config.num_validation=1000
               --config.test_every_epochs=1 --config.iwae_samples=2
               --config.variance_every_steps=0)
  LIMIT=420
else
  EPOCH_FLAGS=(--config.num_epochs=5)
  LIMIT=140
fi
run vae_run "$LIMIT" "$OUT/vae_run.txt" "$PY" experiments/main.py \
  --config=configs/vae.py:arsm_nonlinear --workdir="$WORK" \
  --config.data_dir="$DATA_ABS" --config.progress_every_secs=10 \
  "${EPOCH_FLAGS[@]}"
[[ -f "$WORK/metrics.jsonl" ]] && cp "$WORK/metrics.jsonl" "$OUT/vae_metrics.jsonl"
for f in "$WORK"/summary*; do
  [[ -f "$f" ]] && { echo "--- $(basename "$f")"; cat "$f"; } >> "$OUT/vae_run.txt"
done

log "done: $FAILED step(s) failed; outputs: $(ls "$OUT" | tr '\n' ' ')"
exit $(( FAILED > 0 ))
