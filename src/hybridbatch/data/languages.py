"""Language codes: BCP-47-style tags whose primary subtag is an ISO 639 code.

`normalize_lang("pt_BR") == "pt-BR"`, `normalize_lang("ZH") == "zh"`; an unknown or malformed code raises
`ValueError` so that loaders can turn it into an `InputError` naming the file, line and field.
"""

from __future__ import annotations

import re

# ISO 639-1 (all two-letter codes).
ISO_639_1 = set(
    "aa ab ae af ak am an ar as av ay az ba be bg bh bi bm bn bo br bs ca ce ch co cr cs cu cv cy da de dv dz "
    "ee el en eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi ho hr ht hu hy hz ia id ie ig ii ik "
    "io is it iu ja jv ka kg ki kj kk kl km kn ko kr ks ku kv kw ky la lb lg li ln lo lt lu lv mg mh mi mk ml "
    "mn mr ms mt my na nb nd ne ng nl nn no nr nv ny oc oj om or os pa pi pl ps pt qu rm rn ro ru rw sa sc sd "
    "se sg si sk sl sm sn so sq sr ss st su sv sw ta te tg th ti tk tl tn to tr ts tt tw ty ug uk ur uz ve vi "
    "vo wa wo xh yi yo za zh zu".split()
)
# Three-letter codes seen in CLDR, MIRACL, mMARCO-style data and gettext catalogs that have no 639-1 code.
ISO_639_3_EXTRA = set(
    "ast bgc bho brx ceb chr ckb doi fil fur gsw haw hsb dsb kab kcg kgp kok ksh lij lmo mai mni moh mzn nds "
    "nso pcm qug quz rhg sah sat scn sms smn szl tok vec yrl yue zgh csb frr mhr hil sco ltg".split()
)
KNOWN_PRIMARY = ISO_639_1 | ISO_639_3_EXTRA
_TAG = re.compile(r"^([A-Za-z]{2,3})((?:[-_][A-Za-z0-9]{2,8})*)$")

# Human-readable names of the languages the benchmarks use (for reports).
NAMES = {
    "ar": "Arabic", "de": "German", "el": "Greek", "en": "English", "es": "Spanish", "hi": "Hindi",
    "ru": "Russian", "th": "Thai", "tr": "Turkish", "vi": "Vietnamese", "zh": "Chinese",
}


def normalize_lang(code: object) -> str:
    """Canonical form of a language tag, or `ValueError` saying what is wrong with it."""
    if not isinstance(code, str):
        raise ValueError(f"language code must be a string, got {type(code).__name__}")
    match = _TAG.match(code.strip())
    if not match:
        raise ValueError(f"malformed language code {code!r} (expected e.g. 'en', 'zh-TW', 'pt_BR')")
    primary = match.group(1).lower()
    if primary not in KNOWN_PRIMARY:
        raise ValueError(f"unknown language code {code!r}: '{primary}' is not an ISO 639 language")
    rest = [part for part in re.split(r"[-_]", match.group(2)) if part]
    subtags = []
    for part in rest:
        if len(part) == 4:  # script: Hant, Latn
            subtags.append(part.title())
        elif len(part) == 2 or part.isdigit():  # region: TW, 419
            subtags.append(part.upper())
        else:
            subtags.append(part.lower())
    return "-".join([primary, *subtags])


def is_valid_lang(code: object) -> bool:
    try:
        normalize_lang(code)
    except ValueError:
        return False
    return True
