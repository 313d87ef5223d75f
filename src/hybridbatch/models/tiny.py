"""A tiny, randomly initialized BERT sentence-transformers folder for fast unit tests.

Trainer and evaluation tests need a real `SentenceTransformer` (tokenizer, Transformer, mean pooling,
normalization) that loads from disk like the real ones, but builds in milliseconds and needs no hub.
The tokenizer is a WordPiece vocabulary trained offline on the caller's texts plus a small built-in
multilingual sample, so every script in the tests gets real sub-word ids instead of [UNK].
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import Counter
from pathlib import Path

from hybridbatch.models.offline import (
    COMPLETE_MARKER,
    is_complete,
    publish_folder,
    write_sentence_transformer_files,
)

_KIND = "tiny-bert"
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

MULTILINGUAL_SAMPLE = [
    "The quick brown fox jumps over the lazy dog.",
    "Where is the nearest train station?",
    "Water boils at one hundred degrees Celsius.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "Wo ist der nächste Bahnhof?",
    "Le renard brun rapide saute par-dessus le chien paresseux.",
    "Où se trouve la gare la plus proche ?",
    "El zorro marrón salta sobre el perro perezoso.",
    "¿Dónde está la estación de tren más cercana?",
    "A raposa marrom pula sobre o cão preguiçoso.",
    "Hızlı kahverengi tilki tembel köpeğin üzerinden atlar.",
    "Con cáo nâu nhanh nhẹn nhảy qua con chó lười.",
    "Быстрая коричневая лиса прыгает через ленивую собаку.",
    "Где находится ближайший вокзал?",
    "Η γρήγορη καφέ αλεπού πηδάει πάνω από τον τεμπέλη σκύλο.",
    "Πού είναι ο πλησιέστερος σιδηροδρομικός σταθμός;",
    "الثعلب البني السريع يقفز فوق الكلب الكسول.",
    "أين تقع أقرب محطة قطار؟",
    "השועל החום המהיר קופץ מעל הכלב העצלן.",
    "तेज़ भूरी लोमड़ी आलसी कुत्ते के ऊपर कूदती है।",
    "सबसे नज़दीकी रेलवे स्टेशन कहाँ है?",
    "দ্রুত বাদামী শিয়াল অলস কুকুরের উপর লাফ দেয়।",
    "விரைவான பழுப்பு நரி சோம்பேறி நாயின் மேல் குதிக்கிறது.",
    "สุนัขจิ้งจอกสีน้ำตาลกระโดดข้ามสุนัขขี้เกียจ",
    "สถานีรถไฟที่ใกล้ที่สุดอยู่ที่ไหน",
    "敏捷的棕色狐狸跳过了那只懒狗。",
    "最近的火车站在哪里？",
    "水在一百摄氏度时沸腾。",
    "素早い茶色の狐がのろまな犬を飛び越える。",
    "一番近い駅はどこですか？",
    "빠른 갈색 여우가 게으른 개를 뛰어넘는다.",
    "가장 가까운 기차역이 어디에 있습니까?",
    "Szybki brązowy lis przeskakuje nad leniwym psem.",
    "Nopea ruskea kettu hyppää laiskan koiran yli.",
    "Mbweha mwepesi wa kahawia anaruka juu ya mbwa mvivu.",
    "Rubah cokelat yang cepat melompati anjing yang malas.",
]


def _wordpiece_vocab(texts: list[str], vocab_size: int, normalizer, pre_tokenizer) -> dict[str, int]:
    """Specials, every character (word-initial and `##` continuation), then the most frequent words.

    Built here rather than by `tokenizers`' WordPiece trainer, whose result varies between runs
    (hash-map order breaks frequency ties differently): tests need the same ids every time.
    """
    words: Counter[str] = Counter()
    for text in texts:
        words.update(word for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    chars = sorted({char for word in words for char in word})
    pieces = [*SPECIAL_TOKENS, *chars, *(f"##{char}" for char in chars)]
    ranked = sorted((word for word in words if len(word) > 1), key=lambda word: (-words[word], word))
    pieces += ranked[: max(0, vocab_size - len(pieces))]
    return {piece: index for index, piece in enumerate(pieces)}


def _build_tokenizer(texts: list[str], vocab_size: int):
    """A BERT-style WordPiece tokenizer (lower-cased, accents kept, CJK split into characters)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=False)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    vocab = _wordpiece_vocab(texts, vocab_size, normalizer, pre_tokenizer)
    tokenizer = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tokenizer.decoder = decoders.WordPiece()
    return tokenizer


def _save_tokenizer(folder: Path, tokenizer, max_seq_length: int) -> None:
    from transformers import PreTrainedTokenizerFast

    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=max_seq_length,
    )
    wrapped.save_pretrained(str(folder))


def _save_model(folder: Path, config, seed: int) -> None:
    """Random weights from `seed` without disturbing the caller's global torch RNG."""
    import torch
    from safetensors.torch import save_file
    from transformers import BertModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertModel(config, add_pooling_layer=False)
    state = {key: value.contiguous() for key, value in model.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    config.save_pretrained(str(folder))


def _previous_build(dest: Path) -> dict:
    return json.loads((dest / COMPLETE_MARKER).read_text(encoding="utf-8"))


def build_tiny_sentence_transformer(
    dest: Path,
    texts: list[str] | None = None,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 2,
    seed: int = 0,
    *,
    vocab_size: int = 2000,
    max_seq_length: int = 128,
    prompts: dict[str, str] | None = None,
) -> Path:
    """Build (or reuse) a tiny BERT sentence-transformers folder at `dest`: Transformer -> mean Pooling
    -> Normalize. The vocabulary is trained on `texts` plus `MULTILINGUAL_SAMPLE`; the weights depend
    only on `seed` and the sizes, so two builds with the same arguments encode identically. `prompts`
    (e.g. {"query": "query: ", "passage": "passage: "}) mimic prefix models such as e5.

    A complete folder built with the same arguments is reused; one built with other arguments is
    replaced (its marker proves it is ours to delete).
    """
    dest = Path(dest)
    corpus = [*(texts or []), *MULTILINGUAL_SAMPLE]
    params = {
        "corpus_sha256": hashlib.sha256("\n".join(corpus).encode("utf-8")).hexdigest(),
        "hidden": hidden,
        "layers": layers,
        "heads": heads,
        "seed": seed,
        "vocab_size": vocab_size,
        "max_seq_length": max_seq_length,
        "prompts": prompts or {},
    }
    if is_complete(dest):
        previous = _previous_build(dest)
        if previous.get("kind") != _KIND:
            raise FileExistsError(f"{dest} holds another model ({previous.get('kind')!r}); not replacing it")
        if previous.get("params") == params:
            return dest
        shutil.rmtree(dest)

    def build(tmp: Path) -> None:
        from transformers import BertConfig

        tokenizer = _build_tokenizer(corpus, vocab_size)
        _save_tokenizer(tmp, tokenizer, max_seq_length)
        config = BertConfig(
            vocab_size=tokenizer.get_vocab_size(),
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            intermediate_size=4 * hidden,
            max_position_embeddings=max_seq_length,
            type_vocab_size=2,
            pad_token_id=tokenizer.token_to_id("[PAD]"),
            architectures=["BertModel"],
        )
        _save_model(tmp, config, seed)
        write_sentence_transformer_files(tmp, hidden, prompts, model_kwargs={"add_pooling_layer": False})

    return publish_folder(dest, build, {"kind": _KIND, "params": params})
