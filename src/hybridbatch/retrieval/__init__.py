"""Encoding, exact chunked search and approximate indexes."""
