"""Fuzz of the HL7 v2 door's segments and of the MLLP framing: whatever the bytes, the door answers an ACK whose
MSA-1 is AA, AE or AR (and MSA-2 the MSH-10 it could read) or closes; it never raises and never hangs."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.hl7v2.door import Peer
from shared.hl7v2.mllp import END, START
from tests.hl7_support import Hl7Relais, MllpClient, msa, pam_message, started_relais

pytestmark = pytest.mark.attack

BASE = pam_message("A01", "FUZZ-BASE").encode()
SEGMENTS = BASE.split(b"\r")


@pytest.fixture(scope="module")
def relais(tmp_path_factory) -> Iterator[Hl7Relais]:
    with started_relais(tmp_path_factory.mktemp("hl7-fuzz"), idle_seconds=2, read_seconds=2) as running:
        yield running


def _check(answer: list[bytes] | None) -> None:
    if answer is None:
        return  # closed: no MSH to answer to
    assert answer, "an ACK list is never empty in original mode"
    for ack in answer:
        assert msa(ack)[1] in ("AA", "AE", "AR", "CA", "CR")


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """The base message with one segment replaced, truncated, duplicated or stuffed with random bytes."""
    segments = list(SEGMENTS)
    index = draw(st.integers(1, len(segments) - 1))
    action = draw(st.sampled_from(["replace", "truncate", "repeat", "bytes", "fields"]))
    if action == "replace":
        segments[index] = draw(st.binary(max_size=300))
    elif action == "truncate":
        segments[index] = segments[index][: draw(st.integers(0, len(segments[index])))]
    elif action == "repeat":
        segments[index:index] = [segments[index]] * draw(st.integers(1, 50))
    elif action == "bytes":
        position = draw(st.integers(0, len(segments[index])))
        junk = draw(st.binary(min_size=1, max_size=20))
        segments[index] = segments[index][:position] + junk + segments[index][position:]
    else:
        fields = segments[index].split(b"|")
        fields[draw(st.integers(0, len(fields) - 1))] = draw(st.text(max_size=40)).encode("utf-8", "replace")
        segments[index] = b"|".join(fields)
    control = f"FZ{draw(st.integers(0, 10**9))}".encode()
    return b"\r".join(segments).replace(b"FUZZ-BASE", control, 1)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(message=mutated())
def test_mutated_segments_get_an_ack_or_a_clean_close(relais, message):
    _check(relais.door.answer(message, Peer("127.0.0.1")))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frame=st.binary(max_size=2000))
def test_arbitrary_bytes_as_a_frame_never_raise(relais, frame):
    _check(relais.door.answer(frame, Peer("127.0.0.1")))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stream=st.lists(st.sampled_from([START, END, b"\r", b"\n", b"MSH|^~\\&|", b"\x00", b"x" * 100]), max_size=30))
def test_arbitrary_framing_ends_in_an_ack_or_a_close_within_the_deadlines(relais, stream):
    sock = socket.create_connection(("127.0.0.1", relais.port), timeout=10)
    started = time.monotonic()
    try:
        sock.sendall(b"".join(stream))
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(65536):
            pass
    except (ConnectionResetError, BrokenPipeError):
        pass
    finally:
        sock.close()
    assert time.monotonic() - started < 8  # read deadline 2 s: never waits for ever
    client = MllpClient(relais.port)
    assert msa(client.exchange(pam_message("A28", f"AFTER-{time.monotonic_ns()}").encode()))[1] == "AA"
    client.close()
