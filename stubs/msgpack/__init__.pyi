# Types for msgpack 1.x (its C extension ships no stubs), as far as ipc uses
# it: what its documentation says, checked against the module itself.
# Only mypy reads this file (mypy_path in pyproject.toml); it is not installed.
from collections.abc import Callable
from typing import Any, NamedTuple

from typing_extensions import Buffer

version: tuple[int, int, int]

class ExtType(NamedTuple):
    code: int
    data: bytes

class Timestamp:
    def __init__(self, seconds: int, nanoseconds: int = 0) -> None: ...

class UnpackException(Exception): ...
class ExtraData(ValueError): ...
class FormatError(ValueError, UnpackException): ...
class StackError(ValueError, UnpackException): ...
class OutOfData(UnpackException): ...

def packb(
    o: object,
    *,
    default: Callable[[Any], object] | None = None,
    use_single_float: bool = False,
    use_bin_type: bool = True,
    strict_types: bool = False,
    datetime: bool = False,
    unicode_errors: str | None = None,
) -> bytes: ...
def unpackb(
    packed: Buffer,
    *,
    raw: bool = False,
    use_list: bool = True,
    strict_map_key: bool = True,
    ext_hook: Callable[[int, bytes], object] = ...,
    unicode_errors: str | None = None,
    max_buffer_size: int = 0,
) -> Any: ...

class Packer:
    def __init__(self, *, default: Callable[[Any], object] | None = None,
                 use_single_float: bool = False, autoreset: bool = True,
                 use_bin_type: bool = True, strict_types: bool = False,
                 datetime: bool = False, unicode_errors: str | None = None) -> None: ...
    def pack(self, obj: object) -> bytes: ...
