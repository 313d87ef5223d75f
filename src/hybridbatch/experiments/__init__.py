"""Comparing samplers across evaluations: paired significance tests, the paper's claims, figures.

Works on the files `hybridbatch eval` writes (metrics.json, per_query.tsv.gz). `figures` needs matplotlib
(the `report` extra); the other modules need numpy only.
"""
