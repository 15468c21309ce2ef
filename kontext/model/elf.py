"""The one ELF detail the ahead-of-time package cares about: whether a shared library asks for an
executable stack.

AOTInductor links its `.so` with a `PT_GNU_STACK` program header whose flags include execute (`RWE`
in `readelf -lW`). ZeroGPU's GPU workers refuse to load such a library (the `spaces` package clears
the flag on every `.so` it packages for the same reason), so kontext.model.aot clears it before packaging.
Nothing in the compiled code runs on the stack: clearing the flag only drops a permission request.
"""

from __future__ import annotations

import struct
from pathlib import Path

MAGIC = b"\x7fELF"
ELFCLASS64, ELFDATA2LSB = 2, 1
PT_GNU_STACK = 0x6474E551
PF_X = 0x1


def _stack_header(data: bytes | bytearray) -> tuple[int, int] | None:
    """(offset of the PT_GNU_STACK header's flags, the flags), or None when there is no such header.
    Raises ValueError for anything but a 64-bit little-endian ELF file (what AOTInductor builds)."""
    if data[:4] != MAGIC:
        raise ValueError("not an ELF file")
    if data[4] != ELFCLASS64 or data[5] != ELFDATA2LSB:
        raise ValueError("not a 64-bit little-endian ELF file")
    (phoff,) = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for i in range(phnum):
        entry = phoff + i * phentsize
        p_type, p_flags = struct.unpack_from("<II", data, entry)  # ELF64: p_flags follows p_type
        if p_type == PT_GNU_STACK:
            return entry + 4, p_flags
    return None


def wants_exec_stack(data: bytes | bytearray) -> bool:
    """True when the ELF image in `data` asks for an executable stack."""
    found = _stack_header(data)
    return found is not None and bool(found[1] & PF_X)


def clear_exec_stack(path: str | Path) -> bool:
    """Drop the execute flag from the file's PT_GNU_STACK header; True if it was set."""
    path = Path(path)
    data = bytearray(path.read_bytes())
    found = _stack_header(data)
    if found is None or not found[1] & PF_X:
        return False
    offset, flags = found
    struct.pack_into("<I", data, offset, flags & ~PF_X)
    path.write_bytes(bytes(data))
    return True
