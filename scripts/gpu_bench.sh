#!/usr/bin/env bash
# Speed bench on one H100/H200 with the real FLUX.1 Kontext [dev] architecture (random weights, built on
# the GPU, nothing downloaded). Writes bench.log, one JSON per step and summary.md to $OUT.
#
#   Here, once (needs PyPI):  bash scripts/gpu_bench.sh --fetch-wheels     # fills .whl/ (ignored by git)
#   There, with .whl carried: bash scripts/gpu_bench.sh                    # about 8 minutes
#   (device tool: command "bash scripts/gpu_bench.sh", carry [".whl"], timeout_s 600; then give_back)
#
# The GPU machine has torch but not diffusers/torchao/gradio (and an older transformers): they travel as
# wheels, about 59 MB of the 64 MiB a call may carry.
# Steps run in priority order under one deadline (BENCH_DEADLINE_S, default 540 s); a step that would
# not fit is skipped and says so, and each mode's results are written as soon as it finishes.
# BENCH_MODEL=tiny BENCH_NO_WHEELS=1 PYTHON=.venv/bin/python runs the same steps on a CPU (a smoke test).
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--fetch-wheels" ]; then
    # The pinned packages, then their own dependencies (huggingface_hub, fastapi, pydantic, ...), minus
    # what the GPU machine's image already has (its package list, as the device tool's notes give it):
    # the working tree that travels is limited to 64 MiB, and gradio alone is 30 MB. (idna and regex are
    # carried anyway: small, and transformers needs a recent regex; so are anyio and typing-extensions,
    # whose versions there are unknown and which pydantic and starlette need recent.)
    PINNED="diffusers==0.42.1 transformers==5.23.0 torchao==0.17.0 gradio==6.31.0 gradio_client==2.7.2"
    MACHINE_HAS="absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc attrs certifi
        charset-normalizer click cloudpickle colorama contourpy cycler filelock fonttools frozenlist fsspec h11
        hf-xet httpcore httpx huggingface-hub jinja2 joblib kiwisolver markdown markdown-it-py markupsafe
        matplotlib mdurl ml-dtypes mpmath msgpack multidict networkx numpy packaging pandas peft pillow pip
        protobuf psutil pygments pyparsing python-dateutil pyyaml requests rich safetensors scipy
        sentencepiece setuptools shellingham six sympy tokenizers torch tqdm triton typer
        tzdata urllib3 uvloop werkzeug wheel wrapt xxhash yarl zipp"
    # Versions the machine was seen with: resolve against them, so nothing is pulled for a newer one.
    printf '%s\n' huggingface-hub==1.33.0 tokenizers==0.23.2 numpy==2.5.2 safetensors==0.8.0 >/tmp/kontext-seen.txt
    rm -rf .whl /tmp/kontext-wheels && mkdir -p .whl /tmp/kontext-wheels
    python3 -m pip download -q --only-binary=:all: --python-version 3.12 --implementation cp -c /tmp/kontext-seen.txt \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
        -d /tmp/kontext-wheels $PINNED || exit $?
    for f in /tmp/kontext-wheels/*.whl; do
        name=$(basename "$f" | cut -d- -f1 | tr 'A-Z_.' 'a-z--')
        case " $(echo $MACHINE_HAS) " in *" $name "*) ;; *) cp "$f" .whl/ ;; esac
    done
    if ls .whl | grep -qE '^(torch|triton|nvidia_[a-z0-9_]+)-'; then
        echo "a CUDA wheel slipped in: the machine's own torch must stay"; exit 1
    fi
    du -sh .whl
    exit 0
fi

OUT=${OUT:-/tmp/kontext-gpu-bench}
mkdir -p "$OUT"
LOG="$OUT/bench.log"
DEADLINE=${BENCH_DEADLINE_S:-540}
MODEL=${BENCH_MODEL:-random-full}
PY=${PYTHON:-python3}
# BENCH_NO_WHEELS=1: use the packages $PY already has (a CPU smoke test in the project's venv).
if [ -z "${BENCH_NO_WHEELS:-}" ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH="/tmp/site:$PWD" || { echo "wheel install failed: run --fetch-wheels here first" | tee "$LOG"; exit 1; }
else
    mkdir -p /tmp/site
fi
DEVICE=$("$PY" -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 KONTEXT_CACHE=/tmp/kontext-cache
# One compile cache for all steps: the "warm" step reads what the first compile wrote.
export TORCHINDUCTOR_CACHE_DIR=/tmp/kontext-inductor

# Every installed distribution's requirements must be met, or the run stops here naming what is missing
# (instead of failing minutes later inside one step).
"$PY" - >>"$LOG" 2>&1 <<'PYCHECK' || { echo "dependency check failed: see $LOG" ; tail -20 "$LOG"; exit 1; }
import importlib.metadata as md, sys
from packaging.requirements import Requirement
missing = []
for dist in md.distributions(path=["/tmp/site"]):
    for spec in dist.requires or []:
        req = Requirement(spec)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        try:
            have = md.version(req.name)
        except md.PackageNotFoundError:
            missing.append(f"{dist.metadata['Name']} needs {req} (not installed)")
            continue
        if req.specifier and not req.specifier.contains(have, prereleases=True):
            missing.append(f"{dist.metadata['Name']} needs {req}, found {have}")
print("dependency check:", "ok" if not missing else "; ".join(missing))
sys.exit(1 if missing else 0)
PYCHECK

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  "$PY" -c "import torch, diffusers, transformers, torchao; print(torch.__version__, diffusers.__version__, transformers.__version__, torchao.__version__)"
} >>"$LOG" 2>&1

# step NAME NEEDED_S ARGS...: run one bench if NEEDED_S still fits before the deadline.
# BENCH_SKIP=headline,sizes skips the named steps (a second call that runs only the later ones).
fits() {
    local name=$1 need=$2
    case ",${BENCH_SKIP:-}," in *",$name,"*) echo "== $name: skipped (BENCH_SKIP)" | tee -a "$LOG"; return 1;; esac
    left=$((DEADLINE - SECONDS))
    if [ "$left" -lt "$need" ]; then
        echo "== $name: skipped, ${left}s left of ${DEADLINE}s and it needs about ${need}s" | tee -a "$LOG"
        return 1
    fi
}
step() {
    local name=$1 need=$2; shift 2
    fits "$name" "$need" || return
    echo "== $name (${left}s left): $*" | tee -a "$LOG"
    timeout "$left" "$PY" -m kontext bench --model "$MODEL" --json "$OUT/$name.json" "$@" 2>&1 | tee -a "$LOG"
    echo "== $name: exit ${PIPESTATUS[0]} at ${SECONDS}s" | tee -a "$LOG"
}

# 1. The headline: a 1024x1024 edit, 28 steps, each way of making it faster (about 3 min).
step headline 150 --modes eager,fast,compile,fp8 --sizes edit1024 --steps 28 --runs 2
# 1b. The whole playground at full size: app.py serving random-full, one visitor through gradio_client
#     (upload, 3 edits, undo, re-roll): time per turn as the client sees it, time to the first preview.
if fits app 150; then
    echo "== app (${left}s left): kontext trial" | tee -a "$LOG"
    timeout "$left" "$PY" -m kontext trial --model "$MODEL" --device "$DEVICE" --mode eager --steps 28 \
        --json "$OUT/app.json" 2>&1 | tee -a "$LOG"
    echo "== app: exit ${PIPESTATUS[0]} at ${SECONDS}s" | tee -a "$LOG"
fi
# 2. The other sizes, eager and compiled (compile also shows what a new shape costs; about 2 min).
step sizes 110 --modes eager,compile --sizes edit512,t2i1024 --steps 28 --runs 2
# 3. Low memory: what --mode auto picks for a 24 GB card (model offload + int8 weights), then the
#    offload modes alone: peak GPU memory and per-step cost (8 steps: steps cost the same each).
step lowmem 120 --modes offload-model+int8,offload-model,offload-group --sizes edit1024 --steps 8 --runs 1
# 3b. Ahead of time: the first start exports and compiles, the second only loads the package.
step aot 200 --modes aot --sizes edit1024 --steps 28 --runs 1
step aotwarm 60 --modes aot --sizes edit1024 --steps 28 --runs 1
# 3c. Ahead of time with fp8 weights and activations (the quality-mode candidate for <= 5 s).
step aotfp8 260 --modes aot+fp8 --sizes edit1024 --steps 28 --runs 1
# 4. Start-up with a warm compile cache (step 1 filled it): load + warm-up of the compile mode.
step warmstart 40 --modes compile --sizes edit1024 --steps 28 --runs 1
# 5. fp8 + compile: the fastest per step, but its first compile took 175 s on an H200.
step fp8compile 230 --modes fp8+compile --sizes edit1024 --steps 28 --runs 1

# 6. Host syncs inside the denoising loop (target 0), tiny model on this GPU: seconds.
if [ $((DEADLINE - SECONDS)) -gt 60 ]; then
    echo "== synccheck" | tee -a "$LOG"
    timeout 60 "$PY" scripts/sync_check.py --steps 8 2>&1 | grep -e '^|' -e 'Error' | tee -a "$LOG"
fi

# Tables only, for reading at a glance.
grep -h -e '^|' -e '^== ' -e '^One visitor' -e '^app answering' -e '^banner: ' -e '^error: ' "$LOG" >"$OUT/summary.md"
echo "done in ${SECONDS}s; results in $OUT" | tee -a "$LOG"
