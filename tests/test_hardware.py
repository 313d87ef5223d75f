"""CPU feature detection from /proc/cpuinfo text: the flags that decide bf16 / int8 speed, and the CPU kind."""

from __future__ import annotations

import json

import pytest

from hybridbatch.hardware import RELEVANT_FLAGS, cpu_features, cpu_kind, machine_record, parse_cpuinfo

ZEN5 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 26
model name\t: AMD EPYC
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw avx512vl avx_vnni avx512_bf16 avx512_vnni
processor\t: 1
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw avx512vl avx_vnni avx512_bf16 avx512_vnni
"""
SAPPHIRE = ("vendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Platinum 8481C\n"
            "flags\t\t: avx2 avx512f avx512_bf16 avx512_vnni avx_vnni amx_bf16 amx_tile amx_int8 avx512_fp16\n")
ICELAKE = "vendor_id\t: GenuineIntel\nmodel name\t: Xeon\nflags\t\t: avx2 avx512f avx512_vnni\n"
AVX2 = "vendor_id\t: GenuineIntel\nmodel name\t: Xeon E5\nflags\t\t: sse4_2 avx avx2 fma\n"
ARM = "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics\n"


def test_parse_keeps_only_relevant_flags_in_a_fixed_order():
    model, vendor, flags = parse_cpuinfo(ZEN5)
    assert (model, vendor) == ("AMD EPYC", "AuthenticAMD")
    assert flags == ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni")
    assert set(flags) <= set(RELEVANT_FLAGS)


@pytest.mark.parametrize(("text", "kind"), [
    (SAPPHIRE, "amx"), (ZEN5, "avx512-bf16"), (ICELAKE, "vnni"), (AVX2, "avx2"), (ARM, "other"), ("", "other"),
])
def test_cpu_kind_from_faked_flags(text, kind):
    features = cpu_features(text, with_libraries=False)
    assert features.kind == kind == cpu_kind(features)


def test_amx_flags_are_all_seen():
    features = cpu_features(SAPPHIRE, with_libraries=False)
    assert all(features.has(f) for f in ("amx_tile", "amx_bf16", "amx_int8", "avx512_fp16"))


def test_empty_cpuinfo_means_no_flags():
    features = cpu_features("", with_libraries=False)
    assert features.flags == () and features.model_name == ""


def test_this_machine_record_is_json():
    record = machine_record()
    again = json.loads(json.dumps(record))
    assert again["kind"] in ("amx", "avx512-bf16", "vnni", "avx2", "other")
    assert again["cores"] >= 1 and isinstance(again["flags"], list)
    assert again["torch_capability"]  # torch is installed in the test environment


def test_family_and_model_tell_two_cpus_of_one_kind_apart():
    zen4 = ("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\nmodel name\t: AMD EPYC\n"
            "flags\t\t: avx2 avx512f avx512_bf16 avx512_vnni\n\nprocessor\t: 1\ncpu family\t: 99\nmodel\t\t: 1\n")
    four, five = cpu_features(zen4, with_libraries=False), cpu_features(ZEN5, with_libraries=False)
    assert four.kind == five.kind == "avx512-bf16" and four.model_name == five.model_name
    assert four.family_model == "25/17" and four.as_dict()["family_model"] == "25/17"
    assert five.family_model is None  # no "model" line: unknown, not guessed
