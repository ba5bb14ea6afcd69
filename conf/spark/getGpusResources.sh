#!/usr/bin/env bash
# GPU discovery script for Spark (spark.executor.resource.gpu.discoveryScript and
# spark.worker.resource.gpu.discoveryScript), as in Spark's examples/src/main/scripts.
# Spark runs it when an executor (or worker) starts; it must print one JSON object
# naming the resource and the addresses it may hand to tasks, e.g.
#   {"name": "gpu", "addresses": ["0", "1"]}
# The addresses are the GPU indexes nvidia-smi reports; a task sees its own through
# TaskContext.resources()["gpu"].addresses (kale_spark.models.device.pick_device).
# If the cluster manager already isolates GPUs (YARN/K8s set CUDA_VISIBLE_DEVICES),
# nvidia-smi lists only the visible ones.
set -euo pipefail
ADDRS=$(nvidia-smi --query-gpu=index --format=csv,noheader | sed -e ':a' -e 'N' -e '$!ba' -e 's/\n/","/g')
echo "{\"name\": \"gpu\", \"addresses\": [\"$ADDRS\"]}"
