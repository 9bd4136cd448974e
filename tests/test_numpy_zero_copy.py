"""numpy sees shared memory without a copy: an array over a handle's buffer
is the segment itself, so what another process writes shows up in it."""
from __future__ import annotations

import numpy
import pytest
from helpers.children import run_luaipc

import ipc.mmap
import ipc.shm
import ipc.strfile


def test_frombuffer_is_the_segment_not_a_copy(name):
    with ipc.shm.create(name, 4096) as h:
        arr = numpy.frombuffer(h.buf, dtype=numpy.uint32)
        assert arr.__array_interface__["data"][0] == h.addr  # same memory
        arr[0] = 0x01020304  # numpy writes, the file methods read it
        assert h.read(4) == (0x01020304).to_bytes(4, "little")
        del arr


def test_another_process_writes_numpy_reads(name, engine):
    with ipc.shm.create(name, 4096) as h:
        arr = numpy.frombuffer(h.buf, dtype=numpy.uint8)
        r = run_luaipc(["-e", (f"local h = assert(require('ipc.shm').attach('{name}')) "
                               "h:seek('set', 100) h:write(string.rep('\\7', 50))")],
                       engine=engine)
        assert r.returncode == 0, r.stderr
        assert arr[100:150].tolist() == [7] * 50 and arr[99] == 0 and arr[150] == 0
        arr[0:3] = [76, 117, 97]  # "Lua", written by numpy, read by a child
        r = run_luaipc(["-e", f"io.write(require('ipc.shm').attach('{name}'):read(3))"],
                       engine=engine)
        assert r.stdout == "Lua"
        del arr


def test_mmap_file_as_array(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(bytes(range(256)) * 16)
    with ipc.mmap.open(str(path), "rw") as m:
        arr = numpy.frombuffer(m.buf, dtype=numpy.uint8)
        assert arr.sum() == sum(range(256)) * 16
        arr[:4] = 255
        m.flush()
        del arr
    assert path.read_bytes()[:5] == b"\xff\xff\xff\xff\x04"


def test_a_read_only_handle_gives_a_read_only_array():
    h = ipc.strfile.open(b"abcd")
    arr = numpy.frombuffer(h.buf, dtype=numpy.uint8)
    assert arr.tolist() == [97, 98, 99, 100]
    with pytest.raises(ValueError):
        arr[0] = 1
    del arr
