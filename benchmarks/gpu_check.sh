#!/usr/bin/env bash
# The one script to run on a lent GPU machine (Python 3.12, torch, triton, no network, no pip install: the
# package is used from this checkout through PYTHONPATH):
#
#   bash benchmarks/gpu_check.sh [--dry-run] [OUT_DIR]       (default OUT_DIR: benchmarks/results/gpu-<UTC date>)
#
# Steps, each under `timeout`; limits plus 5 s kill grace sum to 480 s (8 minutes: a second run fits after a
# machine start):
#   env    30 s  GPU name (nvidia-smi, 10 s), python/torch/triton versions (20 s), commit and uncommitted
#                changes -> env.txt
#   tests 165 s  the CUDA tests: tests/ -k "(cuda or triton) and not hopper or sigmoid_kernel" -x (the offline
#                Hopper compile and model tests need no GPU and stay in CI; the sigmoid's error and contract
#                tests of tests/test_hopper_model.py run its jit functions compiled, inline PTX included)
#   floor 215 s  python -m benchmarks floor: dense triton fwd+bwd at n = 4096, p = q = 256, bf16, against
#                docs/spec.md's floor; the largest n whose call fits 60 s; triton_binned at 16384 and 65536; peak memory
#   nccl   55 s  a 1-process torch.distributed NCCL group and one loss call with distributed=True, compared
#                with the single-process loss and gradient
# Hook for the static model of the compiled Hopper code: if benchmarks/results/hopper_model.json exists (or
# the file PC_KERNELS_HOPPER_MODEL names), it is copied into OUT_DIR and floor prints measured vs predicted ms
# for the kernels it names: {"predictions": [{"name": str, "n": int, "p": int, "q": int, "predicted_ms": float}]},
# and for the binned ones under {"binned": {"predictions": [...]}} (triton_binned fwd+bwd at 16384 and 65536:
# the whole call and each grid kernel, one profiled call each).
# A failed or timed-out step is recorded in summary.txt and the next step runs; the exit status is the
# number of failed steps. One log per step in OUT_DIR.
#
# Dry run (--dry-run or PC_KERNELS_GPU_CHECK_DRY_RUN=1): every step on CPU at tiny sizes without CUDA (the
# tests -k cuda, floor --dry-run, Gloo instead of NCCL), default OUT_DIR in $TMPDIR: CI tests the plumbing.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
DRY_RUN="${PC_KERNELS_GPU_CHECK_DRY_RUN:-0}"
if [[ "${1:-}" == "--dry-run" ]]; then
    DRY_RUN=1
    shift
fi
STAMP="$(date -u +%Y%m%d-%H%M%S)"
if [[ "$DRY_RUN" == "1" ]]; then
    OUT_DIR="${1:-${TMPDIR:-/tmp}/pc_kernels_gpu_check-$STAMP}"
    TESTS=(-k cuda)
    FLOOR=(--dry-run)
else
    OUT_DIR="${1:-benchmarks/results/gpu-$STAMP}"
    TESTS=(-k "(cuda or triton) and not hopper or sigmoid_kernel")
    FLOOR=()
fi
mkdir -p "$OUT_DIR"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 PC_KERNELS_GPU_CHECK_DRY_RUN="$DRY_RUN"
PYTHON="${PYTHON:-python3}"
HOPPER_MODEL="${PC_KERNELS_HOPPER_MODEL:-benchmarks/results/hopper_model.json}"
summary="$OUT_DIR/summary.txt"
: >"$summary"
failed=0

# step NAME LIMIT_S COMMAND...: COMMAND under a time limit, its output in NAME.log, its verdict in summary.txt.
step() {
    local name=$1 limit=$2 start=$SECONDS status=0 verdict=ok
    shift 2
    local command="$*"
    echo "== $name (limit $limit s): ${command:0:160}"
    timeout --kill-after=5 "$limit" "$@" >"$OUT_DIR/$name.log" 2>&1 || status=$?
    if [[ $status -eq 124 || $status -eq 137 ]]; then
        verdict="TIMED OUT"
    elif [[ $status -ne 0 ]]; then
        verdict="FAILED (exit $status)"
    fi
    [[ $verdict == ok ]] || failed=$((failed + 1))
    echo "$name: $verdict in $((SECONDS - start)) s" | tee -a "$summary"
}

environment() {
    date -u +"date: %Y-%m-%dT%H:%M:%SZ"
    echo "dry run: $DRY_RUN"
    echo "commit: $(git rev-parse HEAD 2>/dev/null || echo 'unknown (no git repository)')"
    echo "uncommitted changes: $(git status --porcelain 2>/dev/null | wc -l) files"
    timeout 10 nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv \
        || echo "nvidia-smi: not available"
    timeout 20 "$PYTHON" -c 'import platform, torch, triton
print("python:", platform.python_version())
print("torch:", torch.__version__, "cuda:", torch.version.cuda, "available:", torch.cuda.is_available())
print("triton:", triton.__version__)
print("device:", torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu")'
}

read -r -d '' NCCL_CHECK <<'EOF'
import os, tempfile, torch, torch.distributed as dist, pc_kernels
cuda = os.environ["PC_KERNELS_GPU_CHECK_DRY_RUN"] != "1"
device, backend = ("cuda", "nccl") if cuda else ("cpu", "gloo")
if cuda:
    torch.cuda.set_device(0)
with tempfile.TemporaryDirectory() as folder:
    dist.init_process_group(backend, init_method=f"file://{folder}/store", rank=0, world_size=1)
    generator = torch.Generator().manual_seed(0)
    n = 512 if cuda else 64
    student = torch.randn(n, 64, generator=generator).to(device).requires_grad_()
    teacher = torch.randn(n, 64, generator=generator).to(device)
    results = []
    for distributed in (True, False):
        student.grad = None
        loss = pc_kernels.perception_coherence_loss(student, teacher, distributed=distributed)
        loss.backward()
        results.append((loss.detach(), student.grad.clone()))
    dist.destroy_process_group()
(loss, grad), (plain_loss, plain_grad) = results
print(f"{backend}, world size 1, n = {n}, p = q = 64 on {device}: distributed loss {loss.item():.8g}, plain {plain_loss.item():.8g}")
torch.testing.assert_close(loss, plain_loss)
torch.testing.assert_close(grad, plain_grad)
print("distributed=True matches the single-process loss and gradient")
EOF

environment >"$OUT_DIR/env.txt" 2>&1
cat "$OUT_DIR/env.txt"
if [[ -f "$HOPPER_MODEL" ]]; then
    cp "$HOPPER_MODEL" "$OUT_DIR/hopper_model.json"
    FLOOR+=(--predictions "$OUT_DIR/hopper_model.json")
fi
step tests 165 "$PYTHON" -m pytest tests/ -q -x -rfE -p no:cacheprovider --ignore=tests/test_benchmark_report.py \
    "${TESTS[@]}"
# --allow-dirty: env.txt and floor.md record the commit and whether the tree had uncommitted changes.
step floor 215 "$PYTHON" -m benchmarks floor --out "$OUT_DIR" --allow-dirty "${FLOOR[@]}"
step nccl 55 "$PYTHON" -c "$NCCL_CHECK"
echo "results in $OUT_DIR; failed steps: $failed" | tee -a "$summary"
exit "$failed"
