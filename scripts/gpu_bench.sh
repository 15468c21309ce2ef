#!/usr/bin/env bash
# Speed bench on one H100/H200 with the real FLUX.1 Kontext [dev] architecture (random weights, built on
# the GPU, nothing downloaded). Writes bench.log, summary.md and results.tar.gz (one JSON per step, the
# logs of the background steps) to $OUT: three files, within what the device tool brings back.
#
#   Here, once (needs PyPI):  bash scripts/gpu_bench.sh --fetch-wheels     # fills .whl/ (ignored by git)
#   There, with .whl carried: bash scripts/gpu_bench.sh                    # about 9 minutes
#   (device tool: command "bash scripts/gpu_bench.sh", carry [".whl"], timeout_s 600; then give_back)
#
# What it measures, in order (issue: the full-size benchmark, the 24 GB tier, the AOT path, the app):
#   background  the ahead-of-time compile of the transformer (CPU-bound; overlaps the GPU steps below)
#   headline    edit1024, 28 steps: eager, fp8, fast
#   lowmem      --mode auto on a 24 GB card: the allocator capped at 22 GiB (what an L4 or A10G leaves
#               after the CUDA context), so auto picks its low-memory plan; peak GiB and seconds
#   app         app.py serving random-full: one visitor through gradio_client (3 edits, undo, re-roll)
#   sizes       edit512 and text-to-image, eager
#   aotwarm     a fresh process that loads the package compiled in the background: compiled calls > 0
#   warmstart   seconds from process start until an aot edit is possible, with the package on disk
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
RES=/tmp/kontext-results
mkdir -p "$OUT" "$RES"
LOG="$OUT/bench.log"
DEADLINE=${BENCH_DEADLINE_S:-560}
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
# PYTHONFAULTHANDLER: a crash in native code (the first run's aot compile ended in SIGSEGV) prints
# every thread's Python stack to the step's log instead of nothing.
export PYTHONUNBUFFERED=1 PYTHONFAULTHANDLER=1 HF_HUB_OFFLINE=1 KONTEXT_CACHE=${KONTEXT_CACHE:-/tmp/kontext-cache}
# One compile cache for all steps: the fresh aot process reads the package the background compile wrote.
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-/tmp/kontext-inductor}

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

{ date -u +"run at %Y-%m-%d %H:%M UTC"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
  "$PY" -c "import torch, diffusers, transformers, torchao, gradio; print('torch', torch.__version__, 'cuda', torch.version.cuda, '| diffusers', diffusers.__version__, '| transformers', transformers.__version__, '| torchao', torchao.__version__, '| gradio', gradio.__version__)"
} 2>&1 | tee -a "$LOG"

pack() { tar -czf "$OUT/results.tar.gz" -C "$RES" . 2>/dev/null; }
# fits NAME NEEDED_S: whether NEEDED_S still fits before the deadline (BENCH_SKIP=a,b skips steps).
fits() {
    local name=$1 need=$2
    case ",${BENCH_SKIP:-}," in *",$name,"*) echo "== $name: skipped (BENCH_SKIP)" | tee -a "$LOG"; return 1;; esac
    left=$((DEADLINE - SECONDS))
    if [ "$left" -lt "$need" ]; then
        echo "== $name: skipped, ${left}s left of ${DEADLINE}s and it needs about ${need}s" | tee -a "$LOG"
        return 1
    fi
}
# step NAME NEEDED_S ARGS...: one bench in the foreground, if it fits.
step() {
    local name=$1 need=$2; shift 2
    fits "$name" "$need" || return
    echo "== $name (${left}s left): bench $*" | tee -a "$LOG"
    timeout "$left" "$PY" -m kontext bench --model "$MODEL" --device "$DEVICE" --json "$RES/$name.json" "$@" 2>&1 \
        | grep -v -e "it/s]" -e "Warning" | tee -a "$LOG"
    echo "== $name: exit ${PIPESTATUS[0]} at ${SECONDS}s" | tee -a "$LOG"
    pack
}

# The ahead-of-time compile, in the background: mostly CPU (inductor's code generation and the C++
# build); its GPU work (one sample edit, a 2-step warm-up) is small beside the foreground steps'.
AOT_PID=
if fits aotcompile 0; then
    echo "== aotcompile: started in the background at ${SECONDS}s" | tee -a "$LOG"
    TORCHINDUCTOR_COMPILE_THREADS=12 timeout $((DEADLINE - SECONDS - 90)) "$PY" -m kontext bench --model "$MODEL" \
        --device "$DEVICE" --modes aot --sizes edit1024 --steps 2 --runs 1 --json "$RES/aotcompile.json" \
        >"$RES/aotcompile.log" 2>&1 &
    AOT_PID=$!
fi

# 1. The headline: a 1024x1024 edit, 28 steps, eager and the ways of making it faster.
step headline 150 --modes eager,fp8,fast --sizes edit1024 --steps 28 --runs 2
# 2. The 24 GB tier: what --mode auto picks when the process may use 22 GiB, and whether it finishes.
if [ "$DEVICE" = cuda ]; then
    step lowmem 100 --modes auto --gpu-memory-gb 22 --sizes edit1024 --steps 28 --runs 1
fi
# 3. The whole playground at full size: app.py serving the model, one visitor through gradio_client
#    (upload, 3 edits, undo, re-roll): time per turn as the client sees it, time to the first preview.
if fits app 130; then
    echo "== app (${left}s left): kontext trial" | tee -a "$LOG"
    timeout "$left" "$PY" -m kontext trial --model "$MODEL" --device "$DEVICE" --mode eager --steps 28 \
        --json "$RES/app.json" 2>&1 | grep -v -e "it/s]" | tee -a "$LOG"
    echo "== app: exit ${PIPESTATUS[0]} at ${SECONDS}s" | tee -a "$LOG"
    pack
fi
# 4. The other sizes, eager.
step sizes 70 --modes eager --sizes edit512,t2i1024 --steps 28 --runs 1
# 5. Ahead of time: wait for the background compile, then a fresh process that only loads the package.
if [ -n "$AOT_PID" ]; then
    echo "== aotcompile: waiting (${SECONDS}s)" | tee -a "$LOG"
    wait "$AOT_PID"; echo "== aotcompile: exit $? at ${SECONDS}s" | tee -a "$LOG"
    grep -e '^|' -e 'Error' -e 'error' "$RES/aotcompile.log" | tail -8 | tee -a "$LOG"
    pack
fi
if ls "$KONTEXT_CACHE"/aot/*.pt2 >/dev/null 2>&1; then
    step aotwarm 60 --modes aot --sizes edit1024 --steps 28 --runs 2
    # 6. Warm start: process start until an aot edit is possible (model built, package loaded, warm-up).
    if fits warmstart 45; then
        t0=$SECONDS
        timeout "$left" "$PY" -m kontext.tools.bench "$MODEL" aot "$DEVICE" >"$RES/warmstart.log" 2>&1 \
            && echo "== warmstart: aot ready after $((SECONDS - t0)) s (process start to the first possible edit)" \
            | tee -a "$LOG" || echo "== warmstart: failed, see warmstart.log" | tee -a "$LOG"
    fi
else
    echo "== aotwarm: skipped, no package was compiled (see aotcompile.log)" | tee -a "$LOG"
fi

# Tables only, for reading at a glance.
grep -h -e '^|' -e '^== ' -e '^One visitor' -e '^app answering' -e '^banner: ' -e '^error: ' -e '^run at' \
    -e '^torch ' -e 'NVIDIA' "$LOG" >"$OUT/summary.md"
pack
echo "done in ${SECONDS}s; results in $OUT" | tee -a "$LOG"
