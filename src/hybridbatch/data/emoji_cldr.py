"""A real multilingual image-caption set built offline: Noto Color Emoji images x Unicode CLDR names.

Sources (Debian packages, fetched with `apt-get download` + `dpkg-deb -x` into `cache_root()/"debian"`, or
given by the caller):

- `fonts-noto-color-emoji`: `NotoColorEmoji.ttf`. Each emoji is drawn with Pillow at size 109 (the font's
  bitmap strike) with `embedded_color=True` on white, cropped to its ink and centred on a white square of
  `IMAGE_SIZE` pixels (shrunk to fit if larger), saved as PNG.
- `unicode-cldr-core`: `common/annotations/<locale>.xml`, lines such as
  `<annotation cp="😀" type="tts">grinning face</annotation>` (the name: the caption) and
  `<annotation cp="😀">face | grin | grinning face</annotation>` (keywords; extra captions after the name in
  the same language when `keywords=True`, without the ones equal to the name). Names are at position 0, so
  group `<id>#0` holds the translations of one name; keywords at positions >= 1 share a group by position only
  (the generic layout's rule), not because they translate each other.

Which emoji and languages: the base emoji are those with an English tts name in `annotations/en.xml`
(`annotationsDerived/`, the skin-tone and gender variants, is not read). A locale's language is its file name
through `normalize_lang` (`pt_PT` -> `pt-PT`, `zh_Hant` -> `zh-Hant`); only the names a file itself holds are
used (no CLDR inheritance); the inheritance marker `↑↑↑` is not a name, and names or keywords marked
`draft="unconfirmed"` or `"provisional"` are left out as CLDR's own releases do. Counted skips, recorded in
`CaptionSet.skipped` (and `build.json`): locale files whose name `normalize_lang` refuses (e.g. `root`),
locale files with no names of base emoji, and emoji the font cannot render (no ink, the font's missing-glyph
box, or a sequence drawn as several glyphs, i.e. more than 1.5 glyphs wide).

On disk (`cache_root()/"data"/"emoji-cldr"`), in the generic caption layout of `hybridbatch.data.captions`:
`images/<id>.png`, `train.jsonl`, `test.jsonl`, and `build.json` (counts, sources, skips; written last: the
finished marker). Image ids are the codepoints in lower-case hex joined by "-" (`1f469-200d-1f4bb`). The
folder is built beside its destination and renamed into place, so a reader never sees half a set. The split
(`split_emoji`) hashes each id, so it is stable across machines and does not move when emoji are added.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from contextlib import AbstractContextManager
from pathlib import Path

from PIL import Image, ImageChops, ImageDraw, ImageFont

from hybridbatch.data.captions import Caption, CaptionSet, ImageItem, load_caption_jsonl, save_caption_jsonl
from hybridbatch.data.errors import InputError
from hybridbatch.data.languages import normalize_lang
from hybridbatch.io import atomic_folder, replace_folder, write_json
from hybridbatch.paths import cache_root

FONT_PACKAGE = "fonts-noto-color-emoji"
CLDR_PACKAGE = "unicode-cldr-core"
FONT_SIZE = 109  # the only size the bitmap font has
IMAGE_SIZE = 160
INHERIT = "↑↑↑"
UNUSED_DRAFT = ("unconfirmed", "provisional")  # CLDR's own releases use only approved and contributed data
MARKER = "build.json"
SPLITS = ("train", "test")


# ---- sources ---------------------------------------------------------------------------------------------

def fetch_debian_package(name: str, root: Path | None = None) -> Path:
    """`root/name/` holding the extracted files of Debian package `name` (downloaded once, then reused)."""
    root = Path(root) if root is not None else cache_root() / "debian"
    target = root / name
    if (target / ".extracted").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=f".{name}.") as tmp:
        if _run(["apt-get", "download", name], cwd=tmp).returncode != 0:
            _run(["apt-get", "update"], cwd=tmp)  # a fresh machine may have no package lists yet
            result = _run(["apt-get", "download", name], cwd=tmp)
            if result.returncode != 0:
                raise RuntimeError(f"apt-get download {name} failed: {result.stderr.strip()[-500:]}")
        debs = sorted(Path(tmp).glob(f"{name}_*.deb"))
        if not debs:
            raise RuntimeError(f"apt-get download {name} left no {name}_*.deb in {tmp}")
        files = Path(tmp) / "files"
        result = _run(["dpkg-deb", "-x", str(debs[-1]), str(files)], cwd=tmp)
        if result.returncode != 0:
            raise RuntimeError(f"dpkg-deb -x {debs[-1].name} failed: {result.stderr.strip()[-500:]}")
        (files / ".extracted").write_text(debs[-1].name + "\n", encoding="utf-8")
        replace_folder(files, target)  # replaces a half-finished folder of an interrupted run (no marker)
    return target


def _run(cmd: list[str], cwd: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600, check=False)
    except FileNotFoundError as exc:
        raise RuntimeError(f"{cmd[0]} not found: pass font= and cldr_dir= instead") from exc


def find_font(root: Path | None = None) -> Path | None:
    """NotoColorEmoji.ttf from the extracted Debian package, else the system's copy, else None."""
    root = Path(root) if root is not None else cache_root() / "debian"
    candidates = [*sorted((root / FONT_PACKAGE).glob("usr/share/fonts/**/NotoColorEmoji.ttf")),
                  Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")]
    return next((p for p in candidates if p.is_file()), None)


def find_cldr_annotations(root: Path | None = None) -> Path | None:
    """The extracted `common/annotations` folder of unicode-cldr-core, else None."""
    root = Path(root) if root is not None else cache_root() / "debian"
    found = sorted((root / CLDR_PACKAGE).glob("usr/share/**/common/annotations/en.xml"))
    return found[0].parent if found else None


# ---- CLDR annotations ------------------------------------------------------------------------------------

def emoji_id(cp: str) -> str:
    """`"👩‍💻"` -> `"1f469-200d-1f4bb"`."""
    return "-".join(f"{ord(ch):x}" for ch in cp)


def parse_annotations(path: str | Path) -> tuple[dict[str, str], dict[str, list[str]]]:
    """One CLDR annotations file -> (cp -> tts name, cp -> keywords); inheritance markers are dropped."""
    path = Path(path)
    try:
        tree = ET.parse(path)
    except ET.ParseError as exc:
        raise InputError(f"malformed XML ({exc})", path=path, line=exc.position[0]) from exc
    names: dict[str, str] = {}
    keywords: dict[str, list[str]] = {}
    for node in tree.getroot().iter("annotation"):
        cp = node.get("cp")
        text = (node.text or "").strip()
        if not cp or not text or text == INHERIT or node.get("draft") in UNUSED_DRAFT:
            continue
        if node.get("type") == "tts":
            names[cp] = text
        else:
            words = [w.strip() for w in text.split("|")]
            keywords[cp] = [w for w in words if w and w != INHERIT]
    return names, keywords


def read_cldr(cldr_dir: str | Path, keywords: bool = False) -> tuple[dict[str, dict[str, list[str]]], Counter]:
    """cp -> language -> captions (the name first, then keywords if asked), for the base emoji of `en.xml`.

    Also returns the counted skips (locale files refused by `normalize_lang`, or without names).
    """
    cldr_dir = Path(cldr_dir)
    en = cldr_dir / "en.xml"
    if not en.is_file():
        raise InputError("CLDR annotations folder has no en.xml (the base emoji come from its names)", path=en)
    base = parse_annotations(en)[0]
    skipped: Counter = Counter()
    out: dict[str, dict[str, list[str]]] = {cp: {} for cp in base}
    for path in sorted(cldr_dir.glob("*.xml")):
        try:
            lang = normalize_lang(path.stem)
        except ValueError:
            skipped["locale files with an unknown language code"] += 1
            continue
        names, words = parse_annotations(path)
        found = False
        for cp, name in names.items():
            if cp not in out:
                continue
            if lang in out[cp]:
                raise InputError(f"language {lang!r} comes from two locale files", path=path)
            found = True
            captions = [name]
            if keywords:
                captions += [w for w in words.get(cp, []) if w.casefold() != name.casefold()]
            out[cp][lang] = list(dict.fromkeys(captions))
        if not found:
            skipped["locale files with no names of base emoji"] += 1
    return out, skipped


# ---- rendering -------------------------------------------------------------------------------------------

class EmojiRenderer:
    """Draws emoji with a colour font; `render` returns None for what the font cannot draw as one glyph."""

    def __init__(self, font: str | Path, size: int = FONT_SIZE, image_size: int = IMAGE_SIZE):
        self.font = ImageFont.truetype(str(font), size)
        self.size = size
        self.image_size = image_size
        self.canvas = (size * 6, size * 2)
        reference = self._ink("\U0001f600")  # grinning face: one glyph of this font
        if reference is None:
            raise InputError("font draws no ink for U+1F600 (not a colour emoji font?)", path=str(font))
        self.max_width = int(1.5 * reference.width)
        self.notdef = self._ink("\U0010fffd")  # a private-use codepoint: the font's missing-glyph box

    def _ink(self, text: str) -> Image.Image | None:
        canvas = Image.new("RGB", self.canvas, "white")
        ImageDraw.Draw(canvas).text((self.size // 2, self.size // 2), text, font=self.font, embedded_color=True)
        box = ImageChops.difference(canvas, Image.new("RGB", self.canvas, "white")).getbbox()
        return canvas.crop(box) if box else None

    def render(self, cp: str) -> Image.Image | None:
        ink = self._ink(cp)
        if ink is None or ink.width > self.max_width:
            return None
        if self.notdef is not None and ink.size == self.notdef.size and ImageChops.difference(
                ink, self.notdef).getbbox() is None:
            return None
        if max(ink.size) > self.image_size:
            ink.thumbnail((self.image_size, self.image_size), Image.Resampling.LANCZOS)
        square = Image.new("RGB", (self.image_size, self.image_size), "white")
        square.paste(ink, ((self.image_size - ink.width) // 2, (self.image_size - ink.height) // 2))
        return square


# ---- split, build, load ----------------------------------------------------------------------------------

def split_emoji(ids: list[str], test_fraction: float = 0.2) -> tuple[list[str], list[str]]:
    """(train, test): an id goes to test when the SHA-256 of its text, as a fraction of 2**64, is below
    `test_fraction`. Input order is kept; the same id lands on the same side on every machine."""
    if not 0.0 <= test_fraction <= 1.0:
        raise ValueError(f"test_fraction must be in [0, 1], got {test_fraction}")
    train, test = [], []
    for i in ids:
        value = int.from_bytes(hashlib.sha256(i.encode("utf-8")).digest()[:8], "big") / 2**64
        (test if value < test_fraction else train).append(i)
    return train, test


def default_dest() -> Path:
    return cache_root() / "data" / "emoji-cldr"


def build_emoji_cldr(dest: str | Path | None = None, font: str | Path | None = None,
                     cldr_dir: str | Path | None = None, keywords: bool = False, force: bool = False,
                     test_fraction: float = 0.2) -> Path:
    """Build the emoji x CLDR caption set into `dest` (see the module docstring) and return `dest`.

    A finished set is reused unless `force`. Without `font` / `cldr_dir` the Debian packages are fetched.
    """
    dest = Path(dest) if dest is not None else default_dest()
    if (dest / MARKER).is_file() and not force:
        return dest
    started = time.time()
    font = Path(font) if font is not None else find_font(fetch_debian_package(FONT_PACKAGE).parent)
    if font is None or not Path(font).is_file():
        raise InputError("NotoColorEmoji.ttf not found", path=str(font))
    if cldr_dir is None:
        fetch_debian_package(CLDR_PACKAGE)
        cldr_dir = find_cldr_annotations()
        if cldr_dir is None:
            raise InputError("common/annotations not found in the extracted package",
                             path=cache_root() / "debian" / CLDR_PACKAGE)
    by_cp, skipped = read_cldr(cldr_dir, keywords=keywords)
    renderer = EmojiRenderer(font)
    with caption_set_build(dest) as tmp:
        (tmp / "images").mkdir()
        images, captions = [], []
        for cp, by_lang in by_cp.items():
            square = renderer.render(cp)
            if square is None:
                skipped["emoji the font cannot render"] += 1
                continue
            image_id = emoji_id(cp)
            square.save(tmp / "images" / f"{image_id}.png", optimize=True)
            images.append(ImageItem(image_id, str(tmp / "images" / f"{image_id}.png")))
            for lang, texts in sorted(by_lang.items()):
                captions += [Caption(f"{image_id}/{lang}/{pos}", text, lang, (image_id,), f"{image_id}#{pos}")
                             for pos, text in enumerate(texts)]
        full = CaptionSet("emoji-cldr", images, captions, dict(skipped))
        full.validate()
        train_ids, test_ids = split_emoji([i.id for i in images], test_fraction)
        for split, ids in zip(SPLITS, (train_ids, test_ids), strict=True):
            save_caption_jsonl(tmp / f"{split}.jsonl", full.subset(split, image_ids=set(ids)))
        names = Counter(c.lang for c in captions if c.id.endswith("/0"))
        finish_build(tmp, started, {
            "name": "emoji-cldr", "font": str(font), "cldr_annotations": str(cldr_dir), "keywords": keywords,
            "test_fraction": test_fraction, "emoji": len(images), "train": len(train_ids), "test": len(test_ids),
            "languages": len(names), "captions": len(captions),
            "languages_with_1500_names": sum(1 for n in names.values() if n >= 1500),
            "names_per_language": dict(sorted(names.items())), "skipped": dict(sorted(skipped.items())),
        })
    return dest


def is_built(dest: Path) -> bool:
    """A finished caption-set build carries its marker; a half-built folder never does."""
    return (Path(dest) / MARKER).is_file()


def caption_set_build(dest: Path) -> AbstractContextManager[Path]:
    """An empty folder beside `dest` to build a caption set in; when the block ends without error it is renamed
    onto `dest` (an old set there is replaced; a concurrent build that finished first is kept)."""
    return atomic_folder(dest, done=is_built)


def finish_build(folder: Path, started: float, info: dict) -> None:
    """Write the build's marker last: `info` and the seconds since `started` (`time.time()`)."""
    write_json(folder / MARKER, {**info, "seconds": round(time.time() - started, 1)})


def load_emoji_cldr(split: str, dest: str | Path | None = None) -> CaptionSet:
    """The `train` or `test` part of the emoji x CLDR set (built first if missing), with the build's skips."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    dest = build_emoji_cldr(dest)
    info = json.loads((dest / MARKER).read_text(encoding="utf-8"))
    caption_set = load_caption_jsonl(dest / f"{split}.jsonl", name=f"emoji-cldr:{split}")
    caption_set.skipped = dict(info.get("skipped", {}))
    return caption_set
