"""ipc.proc property test: any writes, in any pieces, come back byte-exact."""
from __future__ import annotations

import os

import pytest
from helpers.proc import Sink

from ipc import proc

hypothesis = pytest.importorskip("hypothesis")  # in the [test] extra
st = pytest.importorskip("hypothesis.strategies")

pytestmark = pytest.mark.timeout(300)


@hypothesis.settings(max_examples=25, deadline=None,
                     suppress_health_check=[hypothesis.HealthCheck.too_slow])
@hypothesis.given(st.lists(st.one_of(st.binary(max_size=64),
                                     st.integers(1, 300_000).map(os.urandom)),
                           max_size=40),
                  st.booleans())
def test_any_writes_in_any_pieces_round_trip(pieces, with_stderr):
    sink = Sink()
    cmd = "tee /dev/stderr" if with_stderr else "cat"
    p = proc.spawn(cmd, stdin=True, stdout=True, stderr=True, callback=sink)
    for piece in pieces:
        p.write(piece)
    p.close_stdin()
    assert p.wait() == 0
    want = b"".join(pieces)
    assert sink.out == want
    assert sink.err == (want if with_stderr else b"")
