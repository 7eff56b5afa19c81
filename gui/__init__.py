"""Hearth's Qt user interface."""
