"""A JSON document in shared memory, written by one process and read by many without locks.

The document lives in an anonymous memory file (`memfd_create`, as the arenas of wire/arena.py):
the writer creates it, readers in other processes inherit a descriptor of it (`pass_fds`) and map
it. A memfd has no name in /dev/shm, so there is nothing to name per gateway, nothing a crash
leaves behind, and no resource tracker (multiprocessing.shared_memory's, on 3.11) that unlinks a
segment, or warns about it, when a process that merely attached exits: the kernel frees the file
when the last process holding it closes it or dies.

Layout: a header, then the document as orjson's bytes at DOCUMENT.

    magic (8 bytes) | generation (u64) | length (u64) | crc32 of the document (u32) | ... | document

A seqlock guards it: the writer makes the generation odd, writes the document, its length and its
checksum, then makes the generation even (one more than the odd). A reader reads the generation,
copies the document, and keeps the copy only if the generation was even and is still the same,
retrying otherwise: readers never block the writer, nor each other. The checksum guards against
what the generation alone cannot on a machine that may reorder stores (not x86-64's): a copy that
matches the checksum is a whole document. A reader keeps the last document it parsed, so a read
that finds the generation unchanged costs reading 8 bytes.

The file only grows (sealed against shrinking, so a reader's mapping never outlives the file's
end): the writer grows it before a write that would not fit, and a reader whose mapping is shorter
than the header's length maps it again.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import time
import zlib
from typing import Any

import orjson

from ..errors import Unavailable

MAGIC = b"gwdoc\x00\x00\x01"  # the format's version is its last byte
HEADER = struct.Struct("<8sQQI")  # magic, generation, length, crc32
GENERATION = struct.Struct("<Q")
GENERATION_AT = 8
LENGTH_CRC = struct.Struct("<QI")
LENGTH_CRC_AT = 16
DOCUMENT = 64  # where the document starts: the header rounded up to a cache line
FIRST_SIZE = 64 * 1024
STALLED_AFTER = 1.0  # seconds a reader retries before it says the writer stopped mid-write


class DocumentWriter:
    """The one writer. `fd` is the read-write descriptor; hand readers `read_fd`, a read-only one."""

    def __init__(self, document: Any, name: str = "gateway-document"):
        """`document`: the first one (so that a reader always finds a whole document)."""
        self.fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        os.ftruncate(self.fd, FIRST_SIZE)
        fcntl.fcntl(self.fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK)
        # the same file opened read-only: a process given it cannot write the document
        self.read_fd = os.open(f"/proc/self/fd/{self.fd}", os.O_RDONLY | os.O_CLOEXEC)
        self._map = mmap.mmap(self.fd, FIRST_SIZE)
        self._map[:8] = MAGIC
        self.generation = 0
        self.publish(document)

    def publish(self, document: Any) -> int:
        """Write a new document (JSON-serializable, by orjson); returns its generation."""
        data = orjson.dumps(document)
        if DOCUMENT + len(data) > len(self._map):
            self._grow(DOCUMENT + len(data))
        # fields are packed first and copied in: struct's pack_into zeroes its bytes before it fills
        # them, which a reader could take for generation 0 of an empty document
        self._put(GENERATION_AT, GENERATION.pack(self.generation + 1))
        self._put(DOCUMENT, data)
        self._put(LENGTH_CRC_AT, LENGTH_CRC.pack(len(data), zlib.crc32(data)))
        self.generation += 2
        self._put(GENERATION_AT, GENERATION.pack(self.generation))
        return self.generation

    def _put(self, offset: int, data: bytes) -> None:
        self._map[offset : offset + len(data)] = data

    @property
    def closed(self) -> bool:
        return self._map.closed

    def _grow(self, needed: int) -> None:
        size = len(self._map)
        while size < needed:
            size *= 2
        os.ftruncate(self.fd, size)  # readers' mappings of the old size stay valid: the file only grows
        grown = mmap.mmap(self.fd, size)  # the same file: its header and document are there already
        self._map.close()
        self._map = grown

    def close(self) -> None:
        self._map.close()
        os.close(self.read_fd)
        os.close(self.fd)


class DocumentReader:
    """A reader, over an inherited descriptor of a DocumentWriter's file (its `read_fd`, or `fd`)."""

    def __init__(self, fd: int):
        if not fcntl.fcntl(fd, fcntl.F_GET_SEALS) & fcntl.F_SEAL_SHRINK:
            raise ValueError(f"descriptor {fd} is not a shared document (a memfd sealed against shrinking)")
        self.fd = fd
        self._map = mmap.mmap(fd, os.fstat(fd).st_size, access=mmap.ACCESS_READ)
        if self._map[:8] != MAGIC:
            raise ValueError(f"descriptor {fd} is not a shared document of this format (it starts {self._map[:8]!r})")
        self.generation = -1  # of the document kept: none yet
        self.document: Any = None

    def changed(self) -> bool:
        """Whether a newer document than the one kept was published (8 bytes read)."""
        return GENERATION.unpack_from(self._map, GENERATION_AT)[0] != self.generation

    def read(self) -> Any:
        """The newest whole document (parsed anew only if it changed since the last read)."""
        if self.changed():
            self._read_newest()
        return self.document

    def _read_newest(self) -> None:
        started = time.monotonic()
        while True:
            _, generation, length, crc = HEADER.unpack_from(self._map, 0)
            if generation and generation & 1 == 0:  # 0: nothing published (never seen after the first)
                if DOCUMENT + length > len(self._map):
                    self._remap()  # the writer grew the file
                    continue
                data = self._map[DOCUMENT : DOCUMENT + length]
                if GENERATION.unpack_from(self._map, GENERATION_AT)[0] == generation and zlib.crc32(data) == crc:
                    self.document, self.generation = orjson.loads(data), generation
                    return
            # the writer is mid-write, or wrote while we copied: read again once it has had the CPU
            if time.monotonic() - started > STALLED_AFTER:
                raise Unavailable(f"a shared document stayed mid-write for {STALLED_AFTER} s: did its writer stop?")
            os.sched_yield()

    def _remap(self) -> None:
        grown = mmap.mmap(self.fd, os.fstat(self.fd).st_size, access=mmap.ACCESS_READ)
        self._map.close()
        self._map = grown

    def close(self) -> None:
        """Unmap (the descriptor is the caller's)."""
        self._map.close()
