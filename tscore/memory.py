"""Keeping long-running servers' resident memory close to what they use (glibc only; no-ops elsewhere).

A 100k-row request allocates tens of MB that Python frees but glibc keeps mapped, spread over
one malloc arena per thread: a gateway that answered one big task would then hold 100+ MB
for good. Fewer arenas and an explicit trim after big requests give that memory back.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

_M_ARENA_MAX = -8

try:
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    _malloc_trim = _libc.malloc_trim
    _mallopt = _libc.mallopt
except (OSError, AttributeError):  # not glibc
    _malloc_trim = _mallopt = None


def limit_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's per-thread malloc arenas (call once at process start, before threads start)."""
    if _mallopt is not None and not _mallopt(_M_ARENA_MAX, arenas):
        log.debug("mallopt(M_ARENA_MAX) refused")


def release_free_memory() -> None:
    """Return freed heap memory to the operating system."""
    if _malloc_trim is not None:
        _malloc_trim(0)
