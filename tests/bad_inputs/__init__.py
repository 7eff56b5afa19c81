"""Hostile inputs: what strangers could hand Hearth (model files, templates, secrets), and tools to make them."""

from tests.bad_inputs.gguf_corpus import CorpusFile, write_corpus

__all__ = ["CorpusFile", "write_corpus"]
