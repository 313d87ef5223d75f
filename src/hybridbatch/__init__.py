"""hybridbatch: multilingual retrievers trained and evaluated with language-aware batch composition."""

__version__ = "0.1.0"
