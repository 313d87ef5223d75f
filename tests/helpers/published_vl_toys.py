"""MMMU and xMMMU fixtures in their published layouts (parquet files as on the Hugging Face hub).

- `write_mmmu(root)`: `MMMU/MMMU`'s per-subject folders, `<Subject>/<split>-00000-of-00001.parquet` (dev,
  validation, test), with one question of two images and one left empty without its `<image n>` placeholder.
- `write_xmmmu(root)`: `neulab/PangeaBench-xmmmu`'s `data/` folder, the English validation file and
  `translated_MMMU_val_300_with_image_<Language>.parquet` for French and Japanese (one of the two English
  questions translated).

Every file has MMMU's columns (`SCHEMA`): id, question, options, explanation, image_1 ... image_7 (struct
`{bytes, path}`), img_type, answer, topic_difficulty, question_type, subfield.
"""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
SCHEMA = pa.schema([("id", pa.string()), ("question", pa.string()), ("options", pa.string()),
                    ("explanation", pa.string())] + [(f"image_{k}", IMAGE) for k in range(1, 8)]
                   + [(name, pa.string()) for name in
                      ("img_type", "answer", "topic_difficulty", "question_type", "subfield")])


def image_bytes(color: tuple[int, int, int], fmt: str = "PNG") -> bytes:
    """A 4 x 3 image of one colour, encoded."""
    buffer = io.BytesIO()
    Image.new("RGB", (4, 3), color).save(buffer, format=fmt)
    return buffer.getvalue()


def mmmu_row(row_id: str, question: str, n_images: int = 1, color=(9, 9, 9)) -> dict:
    row = {"id": row_id, "question": question, "options": "['1', '2', '3', '4']", "explanation": "",
           "img_type": "['Diagrams']", "answer": "A", "topic_difficulty": "Easy",
           "question_type": "multiple-choice", "subfield": "Sub"}
    for k in range(1, 8):
        row[f"image_{k}"] = {"bytes": image_bytes(color), "path": f"{k}.png"} if k <= n_images else None
    return row


def write_parquet(path, rows, schema=SCHEMA):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def write_mmmu(root):
    write_parquet(root / "Accounting" / "dev-00000-of-00001.parquet",
                  [mmmu_row("dev_Accounting_1", "<image 1> What is  the\nbalance?")])
    write_parquet(root / "Accounting" / "validation-00000-of-00001.parquet",
                  [mmmu_row("validation_Accounting_1", "Compare <image 1> and <image 2>.", 2),
                   mmmu_row("validation_Accounting_2", " <image 1> ")])
    write_parquet(root / "Art_Theory" / "validation-00000-of-00001.parquet",
                  [mmmu_row("validation_Art_Theory_1", "Which style is <image 1>?", 1, (1, 2, 3))])
    write_parquet(root / "Art_Theory" / "test-00000-of-00001.parquet",
                  [mmmu_row("test_Art_Theory_1", "Not loaded by default.")])
    return root


def write_xmmmu(root):
    """PangeaBench-xmmmu's layout: English validation file + translated_MMMU_val_300_with_image_<Language>."""
    data = root / "data"
    write_parquet(data / "validation-00000-of-00001.parquet",
                  [mmmu_row("validation_Art_1", "What is <image 1>?", 1, (10, 0, 0)),
                   mmmu_row("validation_Art_2", "Untranslated <image 1>", 1)])
    write_parquet(data / "translated_MMMU_val_300_with_image_French.parquet",
                  [mmmu_row("validation_Art_1", "Qu'est-ce que <image 1> ?", 1, (0, 10, 0))])
    write_parquet(data / "translated_MMMU_val_300_with_image_Japanese.parquet",
                  [mmmu_row("validation_Art_1", "<image 1>は何ですか？", 1, (0, 0, 10))])
    return root
