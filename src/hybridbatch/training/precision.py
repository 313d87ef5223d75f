"""Mixed-precision training on CPU: the model's forward under bf16 autocast, everything else in fp32.

`precision: bf16` in a training config runs each forward of the encoder (the SentenceTransformer, or a
dual encoder's towers) under `torch.autocast(device, dtype=torch.bfloat16)`: matrix multiplies in bf16,
layer norms, softmax and the rest in fp32 as autocast decides; the tensors the model returns are cast to
float32, so the loss (InfoNCE / CLIP logits over normalized embeddings, divided by a small temperature)
stays in fp32. Weights, gradients and optimizer state stay fp32 (autocast never changes the parameters), so
checkpoints and resume are unchanged. `precision: auto` picks bf16 where the CPU has native bf16
(`hybridbatch.hardware`: AMX or AVX-512 BF16; a CUDA device with bf16) and fp32 elsewhere (on AVX2,
bf16 is emulated and slower than fp32).

Usage at the call site (the trainer):

    with autocast_forward(model, precision):
        loss = global_batch_loss(...)
    loss.backward()  # outside: autocast covers forward passes only
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from functools import lru_cache

import torch

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "auto")


def resolve_precision(precision: str, device: torch.device | str = "cpu", features=None) -> tuple[str, str]:
    """("fp32" | "bf16", why) for the configured `precision` on `device` (`features`: a
    `hardware.CpuFeatures`, default this CPU's)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision, "set in the config"
    device = torch.device(device)
    if device.type == "cuda":
        ok = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return ("bf16", "CUDA device with bf16") if ok else ("fp32", "CUDA device without bf16")
    if device.type != "cpu":
        return "fp32", f"device {device.type}: bf16 autocast not chosen automatically"
    from hybridbatch.hardware import cpu_features

    features = features or cpu_features()
    if features.kind in ("amx", "avx512-bf16"):
        return "bf16", f"CPU kind {features.kind!r}: native bf16 matrix multiplies"
    return "fp32", f"CPU kind {features.kind!r}: no native bf16 (emulated bf16 is slower than fp32)"


@lru_cache(maxsize=8)
def step_precision(precision: str, device: torch.device | str = "cpu") -> str:
    """`resolve_precision` for a training loop: called every step, decides (and logs why) once."""
    chosen, why = resolve_precision(precision, device)
    if precision == "auto" or chosen != "fp32":
        log.info("training precision %s (configured %s): %s", chosen, precision, why)
    return chosen


@contextmanager
def autocast_forward(model: torch.nn.Module, precision: str, device: torch.device | str = "cpu") -> Iterator[None]:
    """Inside: every call of `model` runs under bf16 autocast and returns float32 tensors (precision "bf16");
    nothing changes for "fp32". Gradients flow through the casts; the parameters stay as they are."""
    if precision == "fp32":
        yield
        return
    if precision != "bf16":
        raise ValueError(f"autocast_forward takes 'fp32' or 'bf16' (resolve 'auto' first), not {precision!r}")
    device_type = torch.device(device).type
    contexts: list = []
    versions: list[tuple[int, ...]] = []  # the parameters' versions when the cached bf16 copies were made

    def enter(module, _args):
        # The cache of bf16 weight copies must never outlive an update of the weights (an optimizer step changes
        # them in place, bumping their version): a stale copy would train on the old weights for the rest of
        # the region. So it is dropped whenever a parameter changed since it was filled.
        now = tuple(p._version for p in module.parameters())
        if versions and versions[0] != now:
            torch.clear_autocast_cache()
        versions[:] = [now]
        context = torch.autocast(device_type, dtype=torch.bfloat16)
        context.__enter__()
        contexts.append(context)

    def leave(_module, _args, output):
        if contexts:
            contexts.pop().__exit__(None, None, None)
        return _to_float32(output)

    handles = [model.register_forward_pre_hook(enter),
               model.register_forward_hook(leave, always_call=True)]
    try:
        # A disabled autocast region around all the calls: the code between them (the loss) runs in fp32, and
        # autocast's cache of bf16 weight copies lives until this region ends (or the weights change: `enter`)
        # instead of being dropped after every call, so a step encoding its batch in several chunks casts each
        # weight once, not per chunk. Use one region per optimizer step.
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=False):
            yield
    finally:
        for handle in handles:
            handle.remove()
        while contexts:  # a forward that raised before its hook ran
            contexts.pop().__exit__(None, None, None)


def _to_float32(output):
    if isinstance(output, torch.Tensor):
        return output.float() if output.dtype in (torch.bfloat16, torch.float16) else output
    if isinstance(output, MutableMapping):
        for key, value in list(output.items()):
            if isinstance(value, torch.Tensor) and value.dtype in (torch.bfloat16, torch.float16):
                output[key] = value.float()
        return output
    if type(output) in (tuple, list):
        return type(output)(_to_float32(value) for value in output)
    return output


__all__ = ["PRECISIONS", "autocast_forward", "resolve_precision", "step_precision"]
