#!/usr/bin/env bash
# Where a CUDA GPU is lent: the GPU-only tests, then decode speed (gpt2, gpt2-xl shapes, fp16) against transformers
# generate(), and gpt2-xl memory in fp32 / fp16 / int8 / nf4. Results go to $OUT (or benchmarks/results).
# Usage: bash benchmarks/gpu_checks.sh [tests] [gpt2] [memory] [xl]   (default: all four, in that order)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-benchmarks/results}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
steps=${*:-tests gpt2 memory xl}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" | tee -a "$out/gpu.txt"
for step in $steps; do
  case $step in
    tests) python3 -m pytest tests/test_gpu.py -q -rs -p no:cacheprovider 2>&1 | tee "$out/gpu-tests.log" ;;
    gpt2) python3 benchmarks/bench_decode.py --device cuda --shapes gpt2 --rounds 3 --callers 1 8 16 \
            --out "$out/decode-cuda-gpt2.json" 2>&1 | grep -v Warning | tee "$out/decode-cuda-gpt2.txt" ;;
    memory) python3 benchmarks/bench_memory.py --shape gpt2-xl --device cuda --out "$out/memory-gpt2-xl-cuda.json" \
            2>&1 | grep -v Warning | tee "$out/memory-gpt2-xl-cuda.txt" ;;
    xl) python3 benchmarks/bench_decode.py --device cuda --shapes gpt2-xl --rounds 2 --callers 1 8 \
            --out "$out/decode-cuda-gpt2-xl.json" 2>&1 | grep -v Warning | tee "$out/decode-cuda-gpt2-xl.txt" ;;
  esac
done
