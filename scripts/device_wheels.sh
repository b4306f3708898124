#!/usr/bin/env bash
# Downloads the wheels that the GPU machine lacks into .whl/ (git-ignored).
#
#   bash scripts/device_wheels.sh          # needs PyPI; run on this machine
#
# The GPU machine (Python 3.12, manylinux x86-64, no network) has JAX with
# CUDA, flax, optax, chex, orbax, absl, numpy, pandas, matplotlib and pytest,
# but not ml-collections, tensorflow-datasets, array-record, gymnax or
# tensorboardX, nor the dependencies of those that its image lacks (listed
# below, from each wheel's Requires-Dist). benchmarks/device_check.sh
# installs everything in .whl/ with `pip install --no-index --no-deps`.
# Versions are those of requirements.txt (and, for dependencies it does not
# pin, of the tested CPU environment). One version of each, or the install
# stops. Pure-Python packages published only as source (promise) are built
# into a wheel here. Prints the total size, which must stay well under the
# 64 MiB that a device call may carry.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
DEST=.whl
LIMIT_MB=40

BINARY=(
  ml_collections==1.1.0
  tensorflow-datasets==4.9.10
  array_record==0.8.6
  gymnax==1.0.1
  gymnasium==1.3.0
  tensorboardX==2.6.5
  dm-tree==0.1.10
  tensorflow-metadata==1.21.0
  googleapis-common-protos==1.76.0
  toml==0.10.2
  termcolor==3.3.0
  simple-parsing==0.1.9
  docstring-parser==0.18.0
  immutabledict==4.3.1
  Farama-Notifications==0.0.6
  importlib_resources==7.1.0
)
SOURCE_ONLY=(
  promise==2.3
)
PLATFORMS=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 \
         manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  PLATFORMS+=(--platform "$p")
done

rm -rf "$DEST"
mkdir -p "$DEST"
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp "${PLATFORMS[@]}" -d "$DEST" "${BINARY[@]}"
"$PY" -m pip wheel -q --no-deps -w "$DEST" "${SOURCE_ONLY[@]}"

ls -1 "$DEST"
count=$(ls -1 "$DEST"/*.whl | wc -l)
want=$(( ${#BINARY[@]} + ${#SOURCE_ONLY[@]} ))
if [[ "$count" -ne "$want" ]]; then
  echo "device_wheels: expected $want wheels, got $count" >&2
  exit 1
fi
size_kb=$(du -sk "$DEST" | cut -f1)
echo "device_wheels: $count wheels, $((size_kb / 1024)) MiB ($size_kb KiB) in $DEST"
if (( size_kb > LIMIT_MB * 1024 )); then
  echo "device_wheels: over ${LIMIT_MB} MiB; the device call carries 64 MiB in all" >&2
  exit 1
fi
