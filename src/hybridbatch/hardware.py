"""What the CPU this process runs on can do fast: the features that decide bf16 / int8 speed.

`cpu_features()` reads `/proc/cpuinfo` (Linux; elsewhere the flags are empty) and asks torch for the
capability its kernels dispatch to, so every benchmark JSON and every evaluation's `metrics.json`
(`timing.cpu`) says which CPU made its numbers. `cpu_kind(features)` names the class of CPU the
fast-path table in `retrieval/fast_encode.py` decides on:

- `"amx"`: AMX tiles with bf16 (Intel Sapphire Rapids and later): bf16 GEMM several times fp32;
- `"avx512-bf16"`: AVX-512 with native bf16 dot products (`avx512_bf16`, e.g. AMD Zen 4/5, Intel Cooper Lake);
- `"vnni"`: int8 dot products (`avx512_vnni` or `avx_vnni`) but no native bf16;
- `"avx2"`: AVX2 without VNNI / bf16 (int8 and bf16 emulated, at most ~2x fp32 for int8);
- `"other"`: none of these (non-x86, or flags unknown).

Bottom layer: no torch or onnxruntime import at module level (both are optional here).
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

# The flags (as /proc/cpuinfo spells them) that decide the speed of bf16 and int8 kernels.
RELEVANT_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_tile", "amx_bf16",
                  "amx_int8", "avx512_fp16")
CPU_KINDS = ("amx", "avx512-bf16", "vnni", "avx2", "other")


@dataclass(frozen=True)
class CpuFeatures:
    model_name: str
    vendor: str
    cores: int
    flags: tuple[str, ...]  # those of RELEVANT_FLAGS present, in that order
    torch_capability: str | None = None  # torch.backends.cpu.get_cpu_capability(), e.g. "AVX512"
    onnxruntime: str | None = None  # onnxruntime's version when installed
    family_model: str | None = None  # "cpu family/model" of /proc/cpuinfo: AMD 25/17 is Zen 4, 26/x Zen 5
    extra: dict = field(default_factory=dict)

    def has(self, flag: str) -> bool:
        return flag in self.flags

    @property
    def kind(self) -> str:
        return cpu_kind(self)

    def as_dict(self) -> dict:
        out = asdict(self)
        out["flags"] = list(self.flags)
        out["kind"] = self.kind
        if not out["extra"]:
            del out["extra"]
        return out


def parse_cpuinfo(text: str) -> tuple[str, str, tuple[str, ...]]:
    """(model name, vendor, relevant flags) from the text of /proc/cpuinfo (the first processor's block)."""
    model = vendor = ""
    flags: set[str] = set()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        if key == "model name" and not model:
            model = value
        elif key == "vendor_id" and not vendor:
            vendor = value
        elif key in ("flags", "Features") and not flags:  # "Features" on arm64
            flags = set(value.split())
    return model, vendor, tuple(f for f in RELEVANT_FLAGS if f in flags)


def parse_family_model(text: str) -> str | None:
    """"family/model" (decimal, as /proc/cpuinfo gives them) of the first processor block, else None: the flags
    alone do not tell two CPUs of one kind apart (Zen 4 and Zen 5 encode bf16 at different speeds)."""
    family = model = None
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip()
        if sep and key == "cpu family" and family is None:
            family = value.strip()
        elif sep and key == "model" and model is None:
            model = value.strip()
        elif not line.strip() and (family or model):
            break
    return f"{family}/{model}" if family and model else None


def cpu_kind(features: CpuFeatures) -> str:
    """The class of CPU (one of CPU_KINDS) the fast-path choice is made for."""
    if features.has("amx_bf16") and features.has("amx_tile"):
        return "amx"
    if features.has("avx512_bf16"):
        return "avx512-bf16"
    if features.has("avx512_vnni") or features.has("avx_vnni"):
        return "vnni"
    if features.has("avx2"):
        return "avx2"
    return "other"


def cpu_features(cpuinfo_text: str | None = None, with_libraries: bool = True) -> CpuFeatures:
    """This machine's CPU features; `cpuinfo_text` replaces /proc/cpuinfo (tests), `with_libraries=False`
    skips asking torch and onnxruntime."""
    if cpuinfo_text is None:
        return _this_machine(with_libraries)
    model, vendor, flags = parse_cpuinfo(cpuinfo_text)
    torch_cap, ort = _library_versions() if with_libraries else (None, None)
    return CpuFeatures(model, vendor, os.cpu_count() or 1, flags, torch_cap, ort, parse_family_model(cpuinfo_text))


@lru_cache(maxsize=2)
def _this_machine(with_libraries: bool) -> CpuFeatures:
    text = ""
    path = Path("/proc/cpuinfo")
    if sys.platform.startswith("linux") and path.exists():
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            text = ""
    model, vendor, flags = parse_cpuinfo(text)
    torch_cap, ort = _library_versions() if with_libraries else (None, None)
    return CpuFeatures(model or platform.processor() or platform.machine(), vendor, os.cpu_count() or 1,
                       flags, torch_cap, ort, parse_family_model(text))


def _library_versions() -> tuple[str | None, str | None]:
    torch_cap = ort = None
    try:
        import torch

        torch_cap = str(torch.backends.cpu.get_cpu_capability())
    except Exception:  # noqa: BLE001 - torch missing or too old: the flags still say enough
        pass
    try:
        import onnxruntime

        ort = str(onnxruntime.__version__)
    except Exception:  # noqa: BLE001 - optional dependency
        pass
    return torch_cap, ort


def machine_record() -> dict:
    """The dict stored in benchmark JSONs and `metrics.json`'s timing block under "cpu"."""
    return cpu_features().as_dict()




def timing_record(model=None) -> dict:
    """What `metrics.json`'s timing block records about the machine: the CPU, and the fast path `model`
    runs (`make_fast` sets `model.fast_path`; None = the model as loaded)."""
    return {"cpu": machine_record(), "fast_path": getattr(model, "fast_path", None)}


__all__ = ["CPU_KINDS", "RELEVANT_FLAGS", "CpuFeatures", "cpu_features", "cpu_kind", "machine_record",
           "parse_cpuinfo", "timing_record"]
