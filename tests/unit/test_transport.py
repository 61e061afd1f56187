"""Writes to one destination go out in the order they were decided, whichever thread decided
them: a reader thread holds one read's output back to write it at once, and a message
decided later on another thread (the control plane's full-text didChange after a client
didChange, a diagnostics clear after a publish) must never overtake what it holds."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator

import pytest

from typemux_lsp.transport import Outbox, Reader


@pytest.fixture
def destination() -> Iterator[tuple[Outbox, int]]:
    """An outbox on a pipe, and the pipe's read end."""
    read_end, write_end = os.pipe()
    outbox = Outbox(write_end, "destination")
    yield outbox, read_end
    outbox.close()
    os.close(read_end)
    os.close(write_end)


def run_reader(on_data: Callable[[bytes], None], data: bytes) -> Reader:
    """A reader thread handling one read of `data`, then the end of input."""
    read_end, write_end = os.pipe()
    reader = Reader(read_end, on_data, lambda: os.close(read_end), "source")
    reader.start()
    os.write(write_end, data)
    os.close(write_end)
    return reader


def received(read_end: int) -> bytes:
    os.set_blocking(read_end, False)
    out = b""
    while True:
        try:
            chunk = os.read(read_end, 65536)
        except BlockingIOError:
            return out
        if not chunk:
            return out
        out += chunk


def test_a_write_decided_later_on_another_thread_never_overtakes_a_held_one(
    destination: tuple[Outbox, int],
) -> None:
    outbox, read_end = destination
    held = threading.Event()
    other_sent = threading.Event()

    def on_data(data: bytes) -> None:
        outbox.send_parts(b"client didChange;")  # decided first, held until the read ends
        held.set()
        assert other_sent.wait(5)

    reader = run_reader(on_data, b"x")
    assert held.wait(5)
    outbox.send_parts(b"full-text didChange;")  # the control plane, decided later
    other_sent.set()
    reader.join(5)
    assert received(read_end) == b"client didChange;full-text didChange;"


def test_what_one_read_produces_is_written_when_the_read_is_handled(
    destination: tuple[Outbox, int],
) -> None:
    outbox, read_end = destination
    seen_during_read: list[bytes] = []

    def on_data(data: bytes) -> None:
        outbox.send_parts(b"one;")
        outbox.send_parts(b"two;", b"three;")
        seen_during_read.append(received(read_end))

    run_reader(on_data, b"x").join(5)
    assert seen_during_read == [b""]  # held for one write at the end of the read
    assert received(read_end) == b"one;two;three;"


def test_two_reader_threads_holding_parts_for_one_destination_keep_their_order(
    destination: tuple[Outbox, int],
) -> None:
    outbox, read_end = destination
    first_held = threading.Event()
    second_done = threading.Event()

    def first(data: bytes) -> None:
        outbox.send_parts(b"publish;")
        first_held.set()
        assert second_done.wait(5)

    def second(data: bytes) -> None:
        outbox.send_parts(b"clear;")
        second_done.set()

    one = run_reader(first, b"x")
    assert first_held.wait(5)
    run_reader(second, b"x").join(5)
    one.join(5)
    assert received(read_end) == b"publish;clear;"
