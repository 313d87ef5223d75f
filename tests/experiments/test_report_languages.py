"""The report's seen / unseen language tables, on hand-made metrics whose averages are worked out by hand."""

from __future__ import annotations

from hybridbatch.experiments.document import Document
from hybridbatch.experiments.grid import compare_config_from_dict
from hybridbatch.experiments.report_languages import language_sections, per_language_table, split_table
from hybridbatch.experiments.report_results import Results

BENCH = "xquad-r"


def metrics(mono: dict[str, float], offset: float = 0.0) -> dict:
    """Monolingual mAP per language as given; cross X-Y mAP = mean of the two; multilingual = mono / 2, rank
    distance 100 x the language's index + 10."""
    langs = sorted(mono)
    return {
        "monolingual": {"per_language": {lang: {"map": v + offset} for lang, v in mono.items()}},
        "crosslingual": {"per_pair": {f"{x}-{y}": {"map": (mono[x] + mono[y]) / 2 + offset}
                                      for x in langs for y in langs if x != y}},
        "multilingual": {"per_language": {lang: {"map": v / 2 + offset, "rank_distance": 100 * i + 10}
                                          for i, (lang, v) in enumerate(sorted(mono.items()))}},
    }


def results_for(tmp_path, languages=("ar", "en")) -> Results:
    config = compare_config_from_dict({
        "base_models": ["me5-small"], "samplers": ["mono", "hybrid"], "seeds": [0, 1], "benchmarks": [BENCH],
        "train": {"data": {"source": "mlqa-r:train", "languages": list(languages)}, "batch_size": 8, "steps": 5},
        "output_dir": str(tmp_path)})
    results = Results(config, systems={"me5-small": ["zero-shot", "mono"]})
    mono = {"ar": 0.6, "de": 0.8, "en": 0.9, "th": 0.4}
    results.metrics[("me5-small", "zero-shot", BENCH)] = [metrics(mono)]
    results.metrics[("me5-small", "mono", BENCH)] = [metrics(mono, 0.01), metrics(mono, 0.03)]
    return results


def test_seen_unseen_macro_averages_per_seed_then_mean_sd(tmp_path):
    header, rows = split_table(results_for(tmp_path), "me5-small", BENCH, {"ar", "en"})
    zero, mono = (dict(zip(header, row, strict=True)) for row in rows)
    assert zero["seeds"] == "1" and mono["seeds"] == "2"
    assert zero["mono mAP seen"] == "0.750" and zero["mono mAP unseen"] == "0.600"  # (.6+.9)/2, (.8+.4)/2
    # pairs: ar-en, en-ar both seen (.75); neither: de-th, th-de (.6); one seen: 8 pairs, mean (.75+.6)/2
    assert zero["cross mAP both seen"] == "0.750" and zero["cross mAP neither seen"] == "0.600"
    assert zero["cross mAP one seen"] == "0.675"
    assert zero["multi mAP seen"] == "0.375" and zero["multi mAP unseen"] == "0.300"
    # rank distance by sorted index ar 10, de 110, en 210, th 310: seen (10+210)/2, unseen (110+310)/2
    assert zero["rank distance seen"] == "110.0" and zero["rank distance unseen"] == "210.0"
    # two seeds +.01 and +.03: mean +.02, sd .0141
    assert mono["mono mAP seen"] == "0.770 ± 0.014" and mono["mono mAP unseen"] == "0.620 ± 0.014"


def test_per_language_table_marks_the_training_languages(tmp_path):
    header, rows = per_language_table(results_for(tmp_path), "me5-small", BENCH, {"ar", "en"})
    assert header == ["system", "ar*", "de", "en*", "th"]
    assert rows[1] == ["mono", "0.620", "0.820", "0.920", "0.420"]


def test_section_only_where_a_benchmark_has_an_unseen_language(tmp_path):
    doc = Document(tmp_path / "figures")
    language_sections(doc, results_for(tmp_path))
    text = doc.markdown()
    assert "## Languages seen and unseen in training" in text and "unseen: de, th" in text
    doc = Document(tmp_path / "figures")
    language_sections(doc, results_for(tmp_path, languages=("ar", "de", "en", "th")))
    assert "Languages seen and unseen" not in doc.markdown()
