"""Hearth's on-disk state: app folders, installed models, settings. Never imports Qt."""
