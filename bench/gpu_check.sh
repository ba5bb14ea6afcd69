#!/usr/bin/env bash
# The GPU check, run by hand on a machine with a CUDA GPU (e.g. a lent H200):
#
#   bash bench/gpu_check.sh            # results under $OUT (if set) or ./gpu-check
#
# Needs python3 with torch (CUDA build), transformers >= 5, tokenizers, safetensors,
# Pillow and pytest: no Spark, no network (the tiny models are built on the spot;
# HF_HUB_OFFLINE=1). If a package is missing, carry its wheels and install them first
# (pip install --no-index --no-deps wheels/*.whl). It prints the torch/CUDA facts, checks
# whether CUDA initialises under an RLIMIT_AS address-space cap (what
# spark.executor.pyspark.memory sets on Spark's Python workers), and runs tests/gpu.
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
import torch, transformers
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

echo "== tests/gpu"
"$PY" -m pytest tests/gpu -m gpu -v -rsP -p no:cacheprovider --junitxml="$OUT_DIR/gpu_tests.xml" \
  2>&1 | tee "$OUT_DIR/gpu_tests.txt"
status=${PIPESTATUS[0]}
echo "exit status $status; results in $OUT_DIR"
exit "$status"
