"""The CPU bundle has no torch: the hardware probe must then find no torch GPU backend, without failing."""

from __future__ import annotations

import sys

import pytest

from inference.hardware import torch_gpu_backends

pytestmark = pytest.mark.packaging


def test_no_torch_means_no_torch_gpu_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # what the frozen app sees: torch cannot be imported
    assert torch_gpu_backends() == ()
