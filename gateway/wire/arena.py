"""Shared-memory arenas for tensor bytes between the gateway and a worker.

An arena is an anonymous memory file (`memfd_create`) that the gateway creates
and the worker inherits as a file descriptor, both mapping it. It never has a
name in /dev/shm, so nothing can be left behind: the kernel frees it when the
last process holding it closes it or dies. Its size is a ceiling, not a cost:
pages are allocated only when first written.

An arena is split into equal regions, one per call slot (wire/messages.py `SLOTS`): a call's
tensors are placed in its slot's region, so that a worker can hold a call while it computes
another. A region's pages are allocated when a call first writes them, so a slot that only ever
carries small (inline) tensors, or none, costs address space, not memory.
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass

ALIGNMENT = 64  # so numpy views of placed tensors are aligned


@dataclass(frozen=True)
class Region:
    """One call slot's part of an arena: where a call's tensors are placed."""

    buf: memoryview

    @property
    def size(self) -> int:
        return len(self.buf)


class Arena:
    def __init__(self, size: int, name: str = "gateway", fd: int | None = None, regions: int = 1):
        if fd is None:
            fd = os.memfd_create(name)  # close-on-exec: only the worker it is passed to inherits it
            os.ftruncate(fd, size)
        self.fd = fd
        self.size = size
        self._map = mmap.mmap(fd, size)
        self.buf = memoryview(self._map)
        part = size // regions // ALIGNMENT * ALIGNMENT  # each region starts aligned
        self.regions = [Region(self.buf[i * part : (i + 1) * part]) for i in range(regions)]

    @classmethod
    def attach(cls, fd: int, regions: int = 1) -> "Arena":
        """The worker side: map an inherited arena."""
        return cls(os.fstat(fd).st_size, fd=fd, regions=regions)

    def resident_bytes(self) -> int:
        """Memory the arena holds: the pages written at least once (they stay allocated)."""
        return os.fstat(self.fd).st_blocks * 512

    def close(self) -> None:
        os.close(self.fd)
        try:
            for region in self.regions:
                region.buf.release()
            self.buf.release()
            self._map.close()
        except BufferError:
            pass  # a numpy view of it still exists; the mapping goes with the last one


def aligned(offset: int) -> int:
    return (offset + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT
