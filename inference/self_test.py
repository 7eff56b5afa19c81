"""A headless check that a model loads and generates: what ``main.py --self-test`` runs."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from inference.engine import EngineOptions, SamplingParams
from inference.errors import GenerationError, InferenceError
from inference.hardware import Hardware
from inference.selector import Preferences
from inference.session import ModelChoice, open_model

log = logging.getLogger(__name__)

SELF_TEST_PROMPT = "Name three colours of the rainbow."
SELF_TEST_TOKENS = 32


def run_self_test(
    choose_model: Callable[[], ModelChoice],
    probe_hardware: Callable[[], Hardware],
    prefs: Preferences,
    cache_dir: Path | None = None,
    *,
    exact_tokens: int | None = None,
    cpu_variant: str | None = None,
    describe_error: Callable[[BaseException], str] | None = None,
) -> dict:
    """Load the chosen model, generate up to 32 tokens greedily, report what happened.

    ``exact_tokens`` generates exactly that many instead, past the model's
    end, to measure decode speed like llama-bench. ``cpu_variant`` picks
    llama.cpp's CPU kernels by name instead of the best for this CPU.
    Never raises: any failure becomes ``{"ok": False, "error": <sentence>}``,
    and its details (the traceback) go to the log. The sentence comes from
    ``describe_error`` (the edge's, ``gui.messages.describe_error``); without
    one, an inference error's own message or the error's name and message.
    """
    loaded = None
    try:
        options = EngineOptions(cache_dir=cache_dir, cpu_variant=cpu_variant)
        loaded = open_model(choose_model(), probe_hardware(), prefs, options=options)
        stream = loaded.engine.stream_chat(
            [{"role": "user", "content": SELF_TEST_PROMPT}],
            params=SamplingParams(temperature=0.0, max_tokens=exact_tokens or SELF_TEST_TOKENS, seed=0,
                                  ignore_eos=exact_tokens is not None),
            cancel=threading.Event(),
        )
        text = "".join(stream)
        stats = stream.stats
        if not text.strip():
            raise GenerationError("The model loaded but produced no text.")
        return {
            "ok": True,
            "engine": loaded.plan.engine,
            "device": loaded.plan.device,
            "cpu_variant": loaded.plan.cpu_variant,
            "model": loaded.display_name,
            "tokens": stats.completion_tokens,
            "tokens_per_s": round(stats.tokens_per_s, 2),
            "ttft_s": round(stats.ttft_s, 4),
            "load_s": round(loaded.load_s, 3),
            "reason": loaded.plan.reason,
        }
    except Exception as exc:  # noqa: BLE001 - the self-test reports every failure as a sentence
        sentence = (describe_error or _plain_sentence)(exc)
        log.warning("Self-test failed: %s", sentence, exc_info=True)
        return {"ok": False, "error": sentence}
    finally:
        if loaded is not None:
            loaded.engine.close()


def _plain_sentence(exc: BaseException) -> str:
    if isinstance(exc, InferenceError):
        return str(exc)
    return f"The self-test failed ({type(exc).__name__}: {exc})."
