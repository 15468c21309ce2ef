"""`python -m kontext doctor`: check a checkout and this environment the way a Hugging Face Space
will meet them, and say what to set. Nothing is changed; exit 1 when something must be fixed.

Checks: the README's front matter (the keys a Gradio Space reads), requirements.txt against
pyproject.toml (a Space installs only requirements.txt), the installed versions against the pins,
a token and, when the hub can be reached, access to the gated model, a GPU that PyTorch cannot use,
and the speed mode the app would choose against the GPU's memory and the packages installed.
`--gpu-memory-gb N` prints only the plan for a GPU of N GiB (kontext/hosting/tiers.py), without having one.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from kontext.env import on_space as env_on_space
from kontext.env import setting
from kontext.hosting.tiers import TIERS, Plan, importable, plan_for
from kontext.model.randomfull import RANDOM_MODELS, RANDOM_SMALL

BUILT_IN = ("tiny", *RANDOM_MODELS)  # made here, nothing to download
MODEL = "black-forest-labs/FLUX.1-Kontext-dev"
REQUIRED_KEYS = ("title", "sdk", "sdk_version", "python_version", "app_file", "short_description", "models",
                 "suggested_hardware", "startup_duration_timeout", "license")
# Pythons ZeroGPU runs (huggingface.co/docs/hub/spaces-zerogpu, "Supported Versions": 3.12.12 and
# 3.10.13); this project needs 3.11 or newer (transformers >= 5.21, numpy >= 2.3), so 3.12.
ZEROGPU_PYTHONS = ("3.12", "3.12.12")
MIN_STARTUP_S = 45 * 60  # a first start downloads about 33 GB of weights
# Dedicated Space hardware with room for the whole model in bf16 (about 34 GB) and an edit.
# Names as huggingface_hub's SpaceHardware spells them.
ROOMY_HARDWARE = ("l40sx1", "l40sx4", "l40sx8", "a100-large", "a100x4", "a100x8",
                  "rtx-pro-6000", "rtx-pro-6000x2", "rtx-pro-6000x4", "rtx-pro-6000x8")
HARDWARE_HINT = ("choose ZeroGPU (free to visitors; the host needs a PRO or Enterprise account) or a GPU "
                 "with at least 40 GB, such as 1x L40S (48 GB) or A100 (80 GB), in the Space's settings")


@dataclass(frozen=True)
class Finding:
    ok: bool
    topic: str
    text: str

    def line(self) -> str:
        return f"{'ok ' if self.ok else 'FIX'}  {self.topic}: {self.text}"


def front_matter(readme: Path) -> dict:
    """The YAML block at the top of README.md, or {} when there is none."""
    import yaml

    text = readme.read_text("utf-8") if readme.is_file() else ""
    m = re.match(r"---\n(.*?)\n---\n", text, re.S)
    if not m:
        return {}
    data = yaml.safe_load(m.group(1))
    return data if isinstance(data, dict) else {}


def _duration_s(value: object) -> float | None:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", str(value))
    if not m:
        return None
    return float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def check_front_matter(root: Path, model: str = MODEL) -> list[Finding]:
    fm = front_matter(root / "README.md")
    if not fm:
        return [Finding(False, "front matter", "README.md has no YAML block between '---' lines at the top")]
    out = [Finding(False, "front matter", f"missing key {k!r}") for k in REQUIRED_KEYS if k not in fm]
    if fm.get("sdk", "gradio") != "gradio":
        out.append(Finding(False, "front matter", f"sdk must be 'gradio', not {fm['sdk']!r}"))
    app_file = fm.get("app_file", "app.py")
    if not (root / str(app_file)).is_file():
        out.append(Finding(False, "front matter", f"app_file {app_file!r} does not exist"))
    py = str(fm.get("python_version", "3.10"))
    if tuple(int(x) for x in re.findall(r"\d+", py)[:2]) < (3, 11):
        out.append(Finding(False, "front matter", f"python_version {py} is too old: diffusers 0.42 needs 3.11+; "
                                                  "set python_version: \"3.12\""))
    elif py not in ZEROGPU_PYTHONS:
        out.append(Finding(False, "front matter", f"python_version {py} runs on a dedicated GPU, but ZeroGPU runs "
                                                  "Python 3.12.12 or 3.10.13 only (and 3.10 cannot install this "
                                                  "project): set python_version: \"3.12\""))
    if len(str(fm.get("short_description", ""))) > 60:
        out.append(Finding(False, "front matter", "short_description is longer than the 60 characters Spaces allow"))
    if model not in BUILT_IN and model not in (fm.get("models") or []):
        out.append(Finding(False, "front matter", f"models should list {model} (the Hub links the Space to it)"))
    hw = fm.get("suggested_hardware")
    if hw is not None and hw not in ROOMY_HARDWARE:
        out.append(Finding(False, "front matter", f"suggested_hardware {hw!r} cannot hold the model: {HARDWARE_HINT}"))
    timeout = _duration_s(fm.get("startup_duration_timeout", "30m"))
    if timeout is None or timeout < MIN_STARTUP_S:
        out.append(Finding(False, "front matter", "startup_duration_timeout must allow a 33 GB first download: "
                                                  "set it to 1h"))
    if setting("LOGIN") == "hf" and fm.get("hf_oauth") is not True:
        out.append(Finding(False, "front matter", "KONTEXT_LOGIN=hf needs hf_oauth: true"))
    sdk = str(fm.get("sdk_version", ""))
    pins = requirement_pins(root / "requirements.txt")
    if "gradio" in pins and pins["gradio"] != sdk:
        out.append(Finding(False, "front matter", f"sdk_version {sdk} differs from gradio=={pins['gradio']} "
                                                  "in requirements.txt"))
    return out or [Finding(True, "front matter", "complete for a Gradio Space")]


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def requirement_pins(path: Path) -> dict[str, str]:
    """name -> pinned version (or '' when not pinned with ==) for each line of a requirements file."""
    pins: dict[str, str] = {}
    if not path.is_file():
        return pins
    for line in path.read_text("utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        m = re.search(r"==\s*([^\s;,]+)", line)
        pins[_name(line)] = m.group(1) if m else ""
    return pins


def check_requirements(root: Path) -> list[Finding]:
    from packaging.requirements import Requirement

    path = root / "requirements.txt"
    if not path.is_file():
        return [Finding(False, "requirements", "there is no requirements.txt: a Space installs nothing else")]
    pins = requirement_pins(path)
    deps = tomllib.loads((root / "pyproject.toml").read_text("utf-8"))["project"]["dependencies"]
    out = []
    for dep in deps:
        req = Requirement(dep)
        name = _name(req.name)
        if name not in pins:
            out.append(Finding(False, "requirements", f"requirements.txt lacks {name} ({dep} in pyproject.toml)"))
        elif not pins[name]:
            out.append(Finding(False, "requirements", f"pin {name} with == to the version the tests ran"))
        elif not req.specifier.contains(pins[name], prereleases=True):
            out.append(Finding(False, "requirements", f"{name}=={pins[name]} is outside pyproject.toml's {dep}"))
    if "spaces" not in pins:
        out.append(Finding(False, "requirements", "requirements.txt lacks spaces (ZeroGPU's decorator)"))
    for tier in TIERS:  # a Space cannot pip install: what --mode auto picks on any GPU must be pinned
        missing = [name for name in tier.plan.packages if name not in pins]
        if missing:
            out.append(Finding(False, "requirements", f"on {tier.hardware} --mode auto picks {tier.plan.speed.label}, "
                                                      f"which needs {', '.join(missing)}: add it to requirements.txt"))
    return out or [Finding(True, "requirements", f"{len(pins)} pins, consistent with pyproject.toml")]


def check_installed(root: Path) -> list[Finding]:
    """Installed versions against the pins: a mismatch is a note, since torch differs by design on CPU."""
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for name, pin in requirement_pins(root / "requirements.txt").items():
        try:
            have = version(name)
        except PackageNotFoundError:
            out.append(Finding(True, "installed", f"{name} is not installed here (the Space installs {pin})"))
            continue
        if pin and have.split("+")[0] != pin:
            out.append(Finding(True, "installed", f"{name} {have} here, {pin} on the Space"))
    return out


def check_access(model: str, offline: bool) -> list[Finding]:
    """A token, and (when the hub can be reached) whether it may read the gated model."""
    from kontext.model.hub import explain_load_error, is_local, token

    if model in BUILT_IN or is_local(model):
        return [Finding(True, "hub access", f"{model} needs no token")]
    tok = token()
    if not tok:
        return [Finding(False, "hub access", f"no Hugging Face token: accept the licence at "
                                             f"https://huggingface.co/{model}, then set the secret HF_TOKEN")]
    if offline or os.environ.get("HF_HUB_OFFLINE") == "1":
        return [Finding(True, "hub access", "a token is set; access to the gated model was not checked (offline)")]
    try:
        from huggingface_hub import HfApi

        HfApi().auth_check(model, token=tok)
    except Exception as e:  # noqa: BLE001 - explained in words below
        text = explain_load_error(model, e)
        if "cannot be reached" in text or "offline mode" in text:
            return [Finding(True, "hub access", "a token is set; the hub cannot be reached, so access was not checked")]
        return [Finding(False, "hub access", text.split(": ", 1)[-1])]
    return [Finding(True, "hub access", f"the token may read {model}")]


def check_packages(root: Path, plan: Plan) -> list[Finding]:
    """Each package the plan imports: pinned in requirements.txt (what a Space installs) and importable here."""
    pins = requirement_pins(root / "requirements.txt")
    out = []
    for name in plan.packages:
        pinned, here = name in pins, importable(name)
        text = (f"{plan.speed.label} needs {name}: "
                + (f"in requirements.txt ({pins[name] or 'unpinned'})" if pinned else "not in requirements.txt")
                + (", importable here" if here else ", not importable here"))
        fixes = ([] if pinned else [f"add {name} to requirements.txt, pinned to the version the tests ran"]) + \
                ([] if here else ["pip install -r requirements.txt"])
        out.append(Finding(pinned and here, "packages", text + (f"; fix: {'; '.join(fixes)}" if fixes else "")))
    return out or [Finding(True, "packages", f"{plan.speed.label} needs nothing beyond the base install")]


def check_plan(root: Path, gpu_gib: float, zerogpu: bool = False) -> list[Finding]:
    """The plan for a GPU of `gpu_gib` GiB, without having one: mode, parts on the GPU, packages, peak."""
    plan = plan_for(gpu_gib, zerogpu)
    where = f"a {gpu_gib:g} GiB GPU" + (" on ZeroGPU" if zerogpu else "")
    peak = plan.peak_gib
    return [
        Finding(True, "plan", f"{where}: speed mode {plan.speed.label}, chosen by --mode auto: {plan.reason}"),
        Finding(True, "plan", f"on the GPU: {plan.on_gpu}"),
        Finding(peak <= gpu_gib, "plan", f"expected peak GPU memory of a 1 MP edit: about {peak:g} GiB (estimated)"
                + ("" if peak <= gpu_gib else f", more than the {gpu_gib:g} GiB there: this GPU is too small")),
        *check_packages(root, plan),
    ]


def check_gpu(root: Path, model: str, mode: str) -> list[Finding]:
    from kontext.env import on_zerogpu
    from kontext.hosting.startup import resolve_speed
    from kontext.model.cudacheck import cuda_problem
    from kontext.model.speed import check_device

    on_space = env_on_space()
    zerogpu = on_zerogpu()
    cpu_model = model in ("tiny", RANDOM_SMALL)
    if not zerogpu and not cpu_model:
        problem = cuda_problem()
        if problem:
            return [Finding(False, "gpu", problem)]
    try:
        import torch

        has_cuda = torch.cuda.is_available()
        speed, reason = resolve_speed(mode, None, zerogpu=zerogpu)
        if has_cuda:
            check_device(speed, "cuda")
    except (ValueError, RuntimeError) as e:
        return [Finding(False, "gpu", str(e))]
    packages = check_packages(root, Plan(0, zerogpu, speed, reason))
    if cpu_model:
        return [Finding(True, "gpu", f"{model} runs anywhere; {reason}"), *packages]
    if not has_cuda and not zerogpu:
        where = "this Space has no GPU: " if on_space else "no CUDA GPU here: "
        return [Finding(not on_space, "gpu", where + HARDWARE_HINT)]
    return [Finding(True, "gpu", reason), *packages]


def run(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kontext doctor", description=__doc__.split("\n\n")[0])
    p.add_argument("--path", default=".", help="the checkout to check (default: here)")
    p.add_argument("--model", default=setting("MODEL") or MODEL)
    p.add_argument("--mode", default=setting("MODE"))
    p.add_argument("--offline", action="store_true", help="do not contact the hub")
    p.add_argument("--gpu-memory-gb", type=float, default=None, metavar="N",
                   help="only print the plan for a GPU of N GiB (no GPU needed): the mode --mode auto picks, "
                        "the parts on the GPU, the packages it needs and the expected peak memory")
    p.add_argument("--zerogpu", action="store_true", help="with --gpu-memory-gb: the plan on ZeroGPU")
    args = p.parse_args(argv)
    root = Path(args.path)
    if not (root / "pyproject.toml").is_file():
        print(f"error: {root} is not a checkout of this project (no pyproject.toml)", file=sys.stderr)
        return 2
    if args.gpu_memory_gb is not None:
        if not 1 <= args.gpu_memory_gb <= 4096:
            print(f"error: --gpu-memory-gb must be from 1 to 4096 GiB, got {args.gpu_memory_gb:g}", file=sys.stderr)
            return 2
        findings = check_plan(root, args.gpu_memory_gb, args.zerogpu)
    else:
        findings = [*check_front_matter(root, args.model), *check_requirements(root), *check_installed(root),
                    *check_access(args.model, args.offline), *check_gpu(root, args.model, args.mode)]
    for f in findings:
        print(f.line())
    bad = [f for f in findings if not f.ok]
    if args.gpu_memory_gb is not None:
        print(f"\n{len(bad)} to fix" if bad else "\nthis plan can run from requirements.txt")
    else:
        print(f"\n{len(bad)} to fix" if bad else "\nready for a Space")
    return 1 if bad else 0
