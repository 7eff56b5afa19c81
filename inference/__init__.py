"""Hearth's inference core: model files, chat formats, engines. Never imports Qt."""
