"""Plug-ins that let other trainers train with hybridbatch's batch plans.

`hybridbatch.integrations.sentence_transformers` makes `SentenceTransformerTrainer` draw mono / cross /
hybrid / mixed-same / en-en batches. It is not imported here: it needs `datasets` and the model libraries,
which the rest of hybridbatch does not.
"""
