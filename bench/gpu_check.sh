#!/usr/bin/env bash
# The GPU check: the one command a session with a lent GPU machine runs (docs/gpu.md).
#
#   bash bench/gpu_check.sh            # results under $OUT (if set) or ./gpu-check
#
# Needs python3 with torch (CUDA build), transformers >= 5, tokenizers, pandas, numpy and
# Pillow (pynvml optional: the GPU busy share is then NVML's): no Spark, no Java, no
# network, nothing carried but the working tree (the models are built on the GPU with
# random weights; HF_HUB_OFFLINE=1). It prints the torch/CUDA facts, checks whether CUDA
# initialises under an RLIMIT_AS address-space cap (what spark.executor.pyspark.memory
# sets on Spark's Python workers), then runs bench/engine_gpu.py, which writes
# $OUT/nvidia-<h100|h200>.json; copy it to bench/figures/ for `kale plan`. Under 8 minutes
# on an H100 (the script's budget, a watchdog, and a timeout here). GPU_TESTS=1 also
# runs tests/gpu (more time: not within the 8 minutes). Set KALE_COMMIT to the commit
# the tree was copied from when the machine gets no .git (the figure is stamped with it).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${OUT:-$PWD/gpu-check}"
mkdir -p "$OUT_DIR"
PY="${PYTHON:-python3}"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export KALE_MODEL_CACHE="$OUT_DIR/.models"

{
  echo "== machine"
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || echo "no nvidia-smi"
  "$PY" - <<'PY'
import importlib.util, torch, transformers
for name in ("pandas", "numpy", "PIL", "tokenizers", "pynvml", "torchvision"):
    print(name, "present" if importlib.util.find_spec(name) else "MISSING")
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
print("transformers", transformers.__version__)
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("device", p.name, f"{p.total_memory / 2**30:.1f} GiB", "bf16", torch.cuda.is_bf16_supported())
PY
  echo "== CUDA under an RLIMIT_AS cap (spark.executor.pyspark.memory)"
  for gib in 8 64 512; do
    "$PY" - "$gib" <<'PY'
import resource, sys
gib = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (gib << 30, gib << 30))
try:
    import torch
    torch.zeros(1, device="cuda").sum().item()
    print(f"RLIMIT_AS={gib} GiB: CUDA initialised")
except Exception as exc:  # noqa: BLE001 - report whatever CUDA says
    print(f"RLIMIT_AS={gib} GiB: CUDA failed: {type(exc).__name__}: {str(exc)[:200]}")
PY
  done
} 2>&1 | tee "$OUT_DIR/gpu_info.txt"

echo "== bench/engine_gpu.py"
# ENGINE_GPU_ARGS=--smoke: a dry run of this script on a CPU.
timeout -k 10 450 "$PY" bench/engine_gpu.py --out "$OUT_DIR" ${ENGINE_GPU_ARGS:-} 2>&1 | tee "$OUT_DIR/engine_gpu.txt"
status=${PIPESTATUS[0]}
if [ "${GPU_TESTS:-0}" = "1" ]; then
  echo "== tests/gpu"
  "$PY" -m pytest tests/gpu -m gpu -v -rsP -p no:cacheprovider --junitxml="$OUT_DIR/gpu_tests.xml" \
    2>&1 | tee "$OUT_DIR/gpu_tests.txt"
  tests_status=${PIPESTATUS[0]}
  [ "$status" -eq 0 ] && status=$tests_status
fi
echo "exit status $status; results in $OUT_DIR"
exit "$status"
