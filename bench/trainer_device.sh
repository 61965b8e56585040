#!/usr/bin/env bash
# The device check of the Trainer: on a machine with one GPU, in under 8 minutes, one JSON object on stdout
# (bench/trainer_device.py says what it measures). Needs `./places setup --gpu` done first (TensorFlow's CUDA
# wheels in .venv); the JSON's "device" names what was measured, and says "CPU only" where TensorFlow saw no GPU.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ ! -x .venv/bin/python ]; then
  echo "trainer_device.sh: no .venv here; run ./places setup --gpu first" >&2
  exit 2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >&2 || echo "nvidia-smi: no NVIDIA GPU seen" >&2
PYTHONPATH=. exec timeout 470 .venv/bin/python bench/trainer_device.py "$@"
