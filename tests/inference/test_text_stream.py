"""Streaming text: UTF-8 split across tokens, invalid bytes, stop strings across chunks."""

from __future__ import annotations

from inference.text_stream import ReplyTextAssembler, StopStringMatcher


def assemble(pieces: list[bytes], stops: tuple[str, ...] = ()) -> tuple[list[str], bool]:
    assembler = ReplyTextAssembler(stops)
    out = [assembler.feed(piece) for piece in pieces]
    out.append(assembler.finish())
    return out, assembler.stopped


def test_multibyte_characters_split_across_tokens() -> None:
    text = "héllo 🌍 日本"
    data = text.encode()
    pieces = [data[i : i + 1] for i in range(len(data))]  # one byte per "token"
    out, _ = assemble(pieces)
    assert "".join(out) == text
    assert all("\ufffd" not in chunk for chunk in out)


def test_invalid_utf8_becomes_replacement_characters() -> None:
    out, _ = assemble([b"ok ", b"\xff\xfe", b" done"])
    assert "".join(out) == "ok \ufffd\ufffd done"


def test_truncated_character_at_the_end_is_replaced() -> None:
    out, _ = assemble([b"end ", "🌍".encode()[:2]])
    assert "".join(out) == "end \ufffd"


def test_stop_string_split_across_chunks() -> None:
    out, stopped = assemble([b"The answer.\n", b"Us", b"er: next"], stops=("\nUser:",))
    assert stopped
    assert "".join(out) == "The answer."


def test_partial_stop_string_is_released_at_the_end() -> None:
    out, stopped = assemble([b"a line\n", b"Us"], stops=("\nUser:",))
    assert not stopped
    assert "".join(out) == "a line\nUs"


def test_text_after_a_stop_is_dropped() -> None:
    matcher = StopStringMatcher(["<end_of_turn>"])
    assert matcher.feed("hi<end_of_turn>more") == "hi"
    assert matcher.stopped
    assert matcher.feed("even more") == ""
    assert matcher.flush() == ""


def test_earliest_of_several_stop_strings_wins() -> None:
    matcher = StopStringMatcher(["\nAssistant:", "\nUser:"])
    assert matcher.feed("x\nUser: y\nAssistant:") == "x"


def test_held_back_text_stays_bounded() -> None:
    """Only a possible prefix of a stop string is held back, never the whole reply."""
    stop = "\nUser:"
    matcher = StopStringMatcher([stop])
    shown = []
    for _ in range(10_000):
        shown.append(matcher.feed("word \n"))
        assert len(matcher._pending) < len(stop)
    assert len("".join(shown)) >= 10_000 * 6 - len(stop)
