#!/usr/bin/env bash
# The GPU checks of issue 21 in one go, on a CUDA machine where thresher is installed (CI has no GPU):
#   1. the GPU tests (fp16 / bf16 MiniLM against the CPU model, faiss GPU k-means where faiss has GPUs,
#      a job with two embedding actors sharing one GPU, the transformer proxy on CUDA, the tokenizer split);
#   2. bench_embed.py on MiniLM: the pipeline's embed phase against a bare fp16 encode loop, and tokens/s
#      as a share of the device's dense bf16 peak, at 50k and then 200k documents;
#   3. nvidia-smi dmon's utilisation samples while the benches run.
# Everything goes to OUT (default bench/out/gpu). PEAK: the device's dense bf16 TFLOP/s (989: H100 / H200 SXM).
# Usage: bench/gpu_checks.sh [OUT] [PEAK]
set -u
OUT=${1:-bench/out/gpu}
PEAK=${2:-989}
mkdir -p "$OUT"
T0=$(date +%s)
stamp() { echo "== $(( $(date +%s) - T0 )) s: $*"; }
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false TQDM_DISABLE=1 HF_HUB_OFFLINE=1
PY=${PYTHON:-python3}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/device.txt"
"$PY" -c "import torch, ray, faiss; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0), '| ray', ray.__version__, '| faiss GPUs', faiss.get_num_gpus())" | tee -a "$OUT/device.txt"

stamp "GPU tests"
"$PY" -m pytest -p no:cacheprovider -v -rs \
  tests/integration/test_determinism_and_models.py::test_gpu_fp16_embedding_and_faiss_kmeans \
  tests/integration/test_determinism_and_models.py::test_gpu_job_two_actors_share_a_gpu \
  tests/unit/test_proxy_transformer.py::test_cuda_runs_and_gives_a_finite_loss \
  tests/unit/test_tokenizer_split.py > "$OUT/gpu_tests.log" 2>&1
echo "pytest exit $?"
grep -E "PASSED|FAILED|SKIPPED|ERROR|passed|failed" "$OUT/gpu_tests.log"

nvidia-smi dmon -s u -d 1 > "$OUT/dmon.log" 2>&1 &
DMON=$!
trap 'kill $DMON 2>/dev/null' EXIT
CPUS=$(nproc)
BENCH=("$PY" bench/bench_embed.py --model minilm --device cuda --actors 2 --gpus-per-actor 0.5 --model-batch-size 256 --batch-size 1024
       --ray-cpus "$CPUS" --repeats 1 --quiet-wait 0 --peak-tflops "$PEAK")
for docs in 50000 200000; do
  stamp "bench_embed, $docs documents"
  "${BENCH[@]}" --docs "$docs" --head-frac 0.1 --out "$OUT/embed-$docs" > "$OUT/bench_embed_$docs.log" 2>&1
  echo "bench exit $?"
  sed -n '/===/,$p' "$OUT/bench_embed_$docs.log"
done
stamp "done"
