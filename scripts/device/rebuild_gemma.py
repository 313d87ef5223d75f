"""Rebuild EmbeddingGemma-300M's folder from the parts `pack_gemma.py` sent (run on the GPU machine).

    python scripts/device/rebuild_gemma.py .gpu       # into $HYBRIDBATCH_CACHE/models/embeddinggemma-300m

Every part's sha256 is checked; weights come back as fp32 of the bf16 values sent; embedding rows not sent
are zeros. Then every question and sentence of XQuAD-R and MLQA-R is tokenized as the runs will see it
and checked to use only rows that were sent: a text that would look up a zero row stops the rebuild.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer

from hybridbatch.models.embeddinggemma import embeddinggemma_cache_path


def main(src: Path, dest: Path | None = None, texts: list[str] | None = None) -> int:
    """Rebuild into `dest` (default: the cache's model folder) and check `texts` (default: the benchmarks')."""
    manifest = json.loads((src / "c1" / "manifest.json").read_text())
    stream = bytearray()
    for part in manifest["parts"]:
        blob = (src / part["name"]).read_bytes()
        if hashlib.sha256(blob).hexdigest() != part["sha256"]:
            raise SystemExit(f"{part['name']}: sha256 differs from the manifest (transfer broken)")
        stream += blob
    rows_raw = (src / "c1" / "rows.int32").read_bytes()
    if hashlib.sha256(rows_raw).hexdigest() != manifest["rows_sha256"]:
        raise SystemExit("rows.int32: sha256 differs from the manifest")
    rows = torch.from_numpy(np.frombuffer(rows_raw, dtype=np.int32).astype(np.int64))
    dest = dest or embeddinggemma_cache_path()
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO((src / "c1" / "model_files.tar.xz").read_bytes()), mode="r:xz") as tar:
        tar.extractall(dest, filter="data")
    files: dict[str, dict[str, torch.Tensor]] = {}
    for entry in manifest["index"]:
        raw = bytes(stream[entry["offset"]:entry["offset"] + entry["nbytes"]])
        sent = torch.frombuffer(bytearray(raw), dtype=torch.int16).view(torch.bfloat16).reshape(entry["sent_shape"])
        tensor = sent.float()
        if entry["rows"]:
            full = torch.zeros(entry["shape"], dtype=torch.float32)
            full[rows] = tensor
            tensor = full
        files.setdefault(entry["file"], {})[entry["key"]] = tensor.contiguous()
    for file, tensors in files.items():
        (dest / file).parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(dest / file), metadata={"format": "pt"})
    check_tokens(dest, set(rows.tolist()), texts)
    (dest / ".complete").write_text(json.dumps({
        "source": "scripts/device/pack_gemma.py: bf16-rounded weights, embedding rows of the tokens of XQuAD-R and "
                  f"MLQA-R only ({len(rows)} of {manifest.get('vocab_rows', 262144)}; the rest zeros)", "weights_sha256": None}, indent=1))
    print(f"rebuilt {dest}: {len(rows)} embedding rows, {len(manifest['parts'])} parts checked")
    return 0


def check_tokens(model_dir: Path, sent_rows: set[int], texts: list[str] | None = None) -> None:
    """Stop unless every token id of `texts` (default: every benchmark text as the runs prefix it) was sent."""
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    if texts is None:
        from hybridbatch.data.lareqa import load_lareqa
        from hybridbatch.models.embeddinggemma import PASSAGE_PREFIX, QUERY_PREFIX

        texts = []
        for name in ("xquad-r", "mlqa-r"):
            bench = load_lareqa(name)
            texts += [QUERY_PREFIX + q.text for q in bench.queries] + [PASSAGE_PREFIX + c.text for c in bench.corpus]
    missing = {i for enc in tokenizer.encode_batch(texts) for i in enc.ids} - sent_rows
    if missing:
        raise SystemExit(f"{len(missing)} token ids of the benchmarks' texts have no row sent: {sorted(missing)[:10]}")
    print(f"token check: {len(texts)} texts use only sent rows")


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
