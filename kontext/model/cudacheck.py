"""Is there an NVIDIA GPU that PyTorch cannot use? Then say why, instead of serving the tiny model.

The torch wheel on the package index is built for one CUDA version (torch 2.11.0: CUDA 13, which needs
an NVIDIA driver of 580 or newer). On a machine with an older driver `torch.cuda.is_available()` is
simply False, and an app that then picks the CPU would run the embedded tiny model on a paid GPU.
`cuda_problem()` finds that case: the GPU is there (the driver's files exist), CUDA does not start.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import warnings
from pathlib import Path

DRIVER_FILE = Path("/proc/driver/nvidia/version")
DEVICE_FILE = Path("/dev/nvidiactl")
# The oldest driver each CUDA major version runs on (NVIDIA's CUDA compatibility table: minor-version
# compatibility within a major version).
MIN_DRIVER = {11: 450, 12: 525, 13: 580}


def driver_version() -> str | None:
    """The NVIDIA kernel driver's version, e.g. '535.104.05', or None when no driver is loaded."""
    try:
        m = re.search(r"Kernel Module\s+(?:for \S+\s+)?([0-9][0-9.]+)", DRIVER_FILE.read_text())
        if m:
            return m.group(1)
    except OSError:
        pass
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=20)
            line = out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else ""
            return line or None
        except (OSError, subprocess.SubprocessError):
            return None
    return None


def has_nvidia_gpu() -> bool:
    """True when the machine shows an NVIDIA GPU's driver (whatever torch makes of it)."""
    return DEVICE_FILE.exists() or DRIVER_FILE.exists() or driver_version() is not None


def cuda_problem() -> str | None:
    """None when CUDA works or there is no NVIDIA GPU; else what stops it and how to fix it."""
    import torch

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if torch.cuda.is_available():
            return None
    if not has_nvidia_gpu():
        return None
    driver = driver_version()
    said = next((str(w.message).split("\n")[0] for w in caught if "CUDA" in str(w.message)), None)
    built = torch.version.cuda
    if built is None:
        cause = f"this torch ({torch.__version__}) is a CPU-only build"
        fix = "install a CUDA build of torch (the package index's torch wheels for Linux are CUDA builds)"
    else:
        major = int(built.split(".")[0])
        need = MIN_DRIVER.get(major)
        cause = (f"this torch ({torch.__version__}) is built for CUDA {built}"
                 + (f", which needs NVIDIA driver {need} or newer" if need else "")
                 + (f"; the driver here is {driver}" if driver else "; no driver version could be read"))
        fix = ("pin a torch build for an older CUDA in requirements.txt: a line "
               "'--extra-index-url https://download.pytorch.org/whl/cu126' and 'torch==VERSION+cu126' "
               "(that index lists each version's builds; CUDA 12 builds run on drivers from 525), "
               "or choose hardware with a newer driver")
    detail = f" (torch says: {said})" if said else ""
    return (f"this machine has an NVIDIA GPU, but PyTorch cannot use it: {cause}{detail}. To fix it, {fix}. "
            "The app does not fall back to the CPU on a GPU machine; to run the tiny demo model on purpose, "
            "start with --model tiny (or --device cpu).")
