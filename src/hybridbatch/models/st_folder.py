"""What a saved sentence-transformers folder needs beyond `SentenceTransformer.save`.

Knows the folder's `sentence_bert_config.json`; knows nothing about run folders, checkpoints or training.
"""

from __future__ import annotations

import json
from pathlib import Path


def record_missing_pooler(model, folder: Path) -> None:
    """sentence-transformers drops `model_kwargs` on save; a BERT built without a pooler (me5-small) would
    then reload with a randomly initialized, unused pooler and a warning. Keep `add_pooling_layer: false`."""
    auto = getattr(model[0], "auto_model", None)
    config_path = folder / "sentence_bert_config.json"
    if auto is None or getattr(auto, "pooler", "absent") is not None or not config_path.is_file():
        return
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config.setdefault("model_kwargs", {})["add_pooling_layer"] = False
    config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")
