"""Helpers shared by the test folders: toy data, tiny models, configs, bad-input strategies.

Imported as `helpers.<module>`: pytest puts `tests/` on the path (`pythonpath` in pyproject.toml), and
`training_toys.subprocess_env` does the same for child processes. The fixtures built on them are in
`tests/conftest.py`.
"""
