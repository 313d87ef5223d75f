"""Pack EmbeddingGemma-300M and the LAReQA data small enough to travel to a lent GPU machine.

The `device` tool sends at most 64 MiB per call, and a warm machine keeps what earlier calls sent. The
model's fp32 weights are 1.2 GB, 201M of its 308M parameters being the 262,144-row embedding table. So:

- only the embedding rows of token ids that occur in XQuAD-R and MLQA-R are sent (every question and
  sentence of both benchmarks, all languages and splits, tokenized with the query prefix, the passage
  prefix and bare; plus ids below 300 and every special token): the other rows are never looked up by
  any text of these runs, so they are rebuilt as zeros without changing any embedding;
- every tensor is rounded to bf16 for the trip (the fp32 model rebuilt there differs from the hub's by
  bf16 rounding, relative 2^-9; the CPU grids here evaluate through a bf16 copy as well);
- the byte stream is cut into parts, one folder per `run` call (`.gpu/c1`, `.gpu/c2`, ...), with a
  manifest of sha256 sums that `rebuild_gemma.py` checks there.

    python scripts/device/pack_gemma.py .gpu        # needs HYBRIDBATCH_LAREQA_DIR and the built model
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import tarfile
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from tokenizers import Tokenizer

from hybridbatch.data.lareqa import find_data_dir, load_lareqa
from hybridbatch.models.embeddinggemma import PASSAGE_PREFIX, QUERY_PREFIX, embeddinggemma_cache_path

WEIGHT_FILES = ("model.safetensors", "2_Dense/model.safetensors", "3_Dense/model.safetensors")
EMBEDDING = "embed_tokens.weight"
SKIPPED = set(WEIGHT_FILES) | {"notebook.ipynb", ".complete"}
ALWAYS_KEPT = 300  # ids below this (Gemma's control and special tokens) are sent whether used or not
CALL_BYTES = 59 << 20  # per folder: the repo (~2.2 MB) travels with every call under the 64 MiB limit


def benchmark_texts() -> list[str]:
    queries, sentences = set(), set()
    for name in ("xquad-r", "mlqa-r"):
        bench = load_lareqa(name)
        queries.update(q.text for q in bench.queries)
        sentences.update(c.text for c in bench.corpus)
    texts = [*queries, *sentences]
    return [p + t for p in (QUERY_PREFIX, PASSAGE_PREFIX, "") for t in texts]


def used_token_ids(tokenizer: Tokenizer, texts: list[str]) -> np.ndarray:
    used = set(range(ALWAYS_KEPT))
    for encoding in tokenizer.encode_batch(texts):
        used.update(encoding.ids)
    used.update(i for i, token in tokenizer.get_added_tokens_decoder().items() if token.special)
    return np.array(sorted(used), dtype=np.int64)


def small_files_tar(model_dir: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:xz") as tar:
        for path in sorted(model_dir.rglob("*")):
            rel = path.relative_to(model_dir).as_posix()
            if path.is_file() and rel not in SKIPPED:
                tar.add(path, arcname=rel)
    return buffer.getvalue()


def data_tar(data_dir: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:xz") as tar:
        for bench in ("xquad-r", "mlqa-r"):
            for path in sorted((data_dir / bench).glob("*")):
                tar.add(path, arcname=f"{bench}/{path.name}")
    return buffer.getvalue()


def main(out: Path, model_dir: Path | None = None, texts: list[str] | None = None, data_dir: Path | None = None,
         call_bytes: int = CALL_BYTES) -> int:
    """Write `out/c1 ...` from `model_dir` (default: the built model), keeping the rows `texts` use (default: the
    benchmarks'); `data_dir` (default: the LAReQA folder) is packed too."""
    model_dir = model_dir or embeddinggemma_cache_path()
    texts = benchmark_texts() if texts is None else texts
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    keep = used_token_ids(tokenizer, texts)
    index, stream = [], bytearray()
    for file in WEIGHT_FILES:
        with safe_open(str(model_dir / file), "pt") as tensors:
            for key in tensors.keys():
                tensor = tensors.get_tensor(key)
                if key == EMBEDDING:
                    rows = keep[keep < tensor.shape[0]]
                    vocab_rows = tensor.shape[0]
                    full_shape = list(tensor.shape)
                    tensor = tensor[torch.from_numpy(rows)]
                else:
                    rows, full_shape = None, list(tensor.shape)
                raw = tensor.to(torch.bfloat16).contiguous().view(torch.int16).numpy().tobytes()
                index.append({"file": file, "key": key, "shape": full_shape, "sent_shape": list(tensor.shape),
                              "offset": len(stream), "nbytes": len(raw), "rows": rows is not None})
                stream += raw
    rows_raw = keep[keep < vocab_rows].astype(np.int32).tobytes()
    extras = {"whl": None, "lareqa.tar.xz": data_tar(data_dir or find_data_dir()),
              "model_files.tar.xz": small_files_tar(model_dir),
              "rows.int32": rows_raw}
    first = call_bytes - sum(len(v) for v in extras.values() if v) - sum(
        p.stat().st_size for p in (out / "whl").glob("*.whl"))
    parts, start = [], 0
    sizes = [first] + [call_bytes] * 1000
    for size in sizes:
        if start >= len(stream):
            break
        parts.append(bytes(stream[start:start + size]))
        start += size
    manifest = {"index": index, "parts": [], "kept_rows": int(len(keep[keep < vocab_rows])),
                "vocab_rows": int(vocab_rows), "texts": len(texts), "dtype_sent": "bfloat16"}
    for i, part in enumerate(parts):
        folder = out / f"c{i + 1}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"part-{i:02d}.bin").write_bytes(part)
        manifest["parts"].append({"name": f"c{i + 1}/part-{i:02d}.bin", "sha256": hashlib.sha256(part).hexdigest()})
    for name, blob in extras.items():
        if blob is not None:
            (out / "c1" / name).write_bytes(blob)
    manifest["rows_sha256"] = hashlib.sha256(rows_raw).hexdigest()
    (out / "c1" / "manifest.json").write_text(json.dumps(manifest, indent=1))
    if (out / "whl").is_dir():
        os.replace(out / "whl", out / "c1" / "whl")
    for folder in sorted(out.glob("c*")):
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        print(f"{folder.name}: {size / 2**20:.1f} MiB")
    print(f"kept {manifest['kept_rows']} of {vocab_rows} embedding rows; {len(stream) / 2**20:.1f} MiB of bf16 weights")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
