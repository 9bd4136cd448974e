"""The Python handle of the memfile core, through all three modules."""
from __future__ import annotations

import ctypes
import errno
import gc
import io
import sys

import pytest
from helpers.names import SHM_DIR

import ipc
import ipc.mmap
import ipc.shm
import ipc.strfile

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=["strfile", "shm", "mmap"])
def opener(request, make_name, tmp_path):
    """open(data) -> a handle over data (writable for shm and mmap)."""
    made = []

    def open_(data: bytes):
        if request.param == "strfile":
            h = ipc.strfile.open(data)
        elif request.param == "shm":
            h = ipc.shm.create(make_name(), len(data))
            h.write(data)
            h.seek(0)
        else:
            path = tmp_path / f"f{len(made)}.bin"
            path.write_bytes(data)
            h = ipc.mmap.open(path, "rw")
        made.append(h)
        return h

    open_.kind = request.param
    yield open_
    for h in made:
        h.close()


def test_read_readline_iter(opener):
    h = opener(b"one\ntwo\r\nthree")
    assert h.read(2) == b"on"
    assert h.readline() == b"e\n"
    assert h.tell() == 4
    assert list(h) == [b"two\r\n", b"three"]
    assert h.read() == b"" and h.read(5) == b"" and h.readline() == b""
    h.seek(0)
    assert h.readlines() == [b"one\n", b"two\r\n", b"three"]
    h.seek(0)
    assert h.readline(2) == b"on"
    assert h.read(None) == b"e\ntwo\r\nthree"
    h.seek(4)
    b = bytearray(3)
    assert h.readinto(b) == 3 and b == b"two"


def test_seek_tell_size_truncate(opener):
    h = opener(b"0123456789")
    assert h.size() == len(h) == 10
    assert h.seek(3) == 3 and h.seek(2, io.SEEK_CUR) == 5 and h.seek(-1, io.SEEK_END) == 9
    for bad in [(11,), (-1,), (-10, io.SEEK_CUR), (1, io.SEEK_END)]:
        with pytest.raises(ValueError, match="invalid offset"):
            h.seek(*bad)
    assert h.tell() == 9  # a failed seek leaves the position alone
    with pytest.raises(ValueError):
        h.seek(0, 7)
    with pytest.raises(TypeError):
        h.seek(1.5)
    assert h.truncate(4) == 4 and h.tell() == 4 and h.size() == 4
    with pytest.raises(ValueError, match="too large"):
        h.truncate(5)
    h.seek(0)
    assert h.read() == b"0123" and len(h.buf) == 4


def test_write_and_space(opener):
    h = opener(b"..........")
    if opener.kind == "strfile":
        assert not h.writable()
        with pytest.raises(io.UnsupportedOperation):
            h.write(b"x")
        return
    assert h.write(b"abc") == 3 and h.write(bytearray(b"de")) == 2
    with pytest.raises(ipc.IPCError) as exc:
        h.write(b"123456")
    assert exc.value.errno == errno.ENOSPC and "not enough space" in str(exc.value)
    assert h.tell() == 5  # nothing written
    assert h.write(memoryview(b"12345")) == 5
    h.flush()
    h.seek(0)
    assert h.read() == b"abcde12345"


def test_buf_is_the_memory_itself(opener):
    h = opener(b"hello world")
    view = h.buf
    assert bytes(view) == b"hello world"
    if opener.kind == "strfile":
        assert view.readonly
        assert h.addr != 0
    else:
        # Writing through the view is seen by read(): no copy in between.
        view[0:5] = b"HELLO"
        assert h.read(5) == b"HELLO"
        # ctypes sees the same address as addr and the same bytes.
        c = (ctypes.c_char * 11).from_buffer(view)
        assert ctypes.addressof(c) == h.addr
        c[6] = b"W"
        h.seek(0)
        assert h.read() == b"HELLO World"
        del c
    view.release()


def test_memoryview_of_the_handle(opener):
    """memoryview(h) where Python lets a Python class export a buffer (3.12+,
    PEP 688); before that no __buffer__ is advertised, and h.buf is the way."""
    h = opener(b"hello")
    if sys.version_info >= (3, 12):
        with memoryview(h) as v:
            assert bytes(v) == b"hello"
    else:
        assert not hasattr(h, "__buffer__")
        with pytest.raises(TypeError):
            memoryview(h)
    with memoryview(h.buf) as v:
        assert bytes(v) == b"hello"


def test_close_with_a_live_view(opener):
    h = opener(b"abcdef")
    view = h.buf
    h.close()  # no BufferError: the mapping lives on with the view
    assert bytes(view) == b"abcdef"
    view.release()


def test_strfile_api():
    data = b"x\ny"
    h = ipc.strfile.open(data)
    assert h.buf.obj is data  # no copy of bytes
    assert list(h) == [b"x\n", b"y"]
    assert ipc.strfile.open(bytearray(b"ab")).read() == b"ab"
    with pytest.raises(TypeError):
        ipc.strfile.open("text")
    assert repr(ipc.strfile.open(b"")).startswith("<ipc.strfile")


def test_finalizer_runs_on_collection(make_name):
    name = make_name()
    h = ipc.shm.create(name, 10)
    assert (SHM_DIR / name).exists()
    del h
    gc.collect()
    assert not (SHM_DIR / name).exists()
