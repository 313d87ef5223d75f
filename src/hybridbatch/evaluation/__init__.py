"""Evaluation settings (monolingual, cross-lingual, multilingual), metrics, language bias and reports."""
