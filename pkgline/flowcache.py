"""The packaged flow library, built once and kept in the user's cache directory.

Every command that reads or moves a lot needs the nine flows, and building them (reading the
YAML, validating it with the files' pydantic schema, resolving fragments, checking every
limit) costs each ``pkgline`` process more than reading the built library back. So the
library is pickled into ``$CACHE_DIRECTORY`` (systemd's ``CacheDirectory=``), else
``$XDG_CACHE_HOME/pkgline``, else ``~/.cache/pkgline``, under a key that is the SHA-256 of
everything it was built from: the defs files and the source of the ``flows`` package (the
classes pickled and the code that built them), with the Python and pkgline versions.

A cached library is used only when all of this holds, else it is built again (and the cache
rewritten when the directory allows it):

- the file's name and its first line carry the key of the files as they are now;
- the first line carries the SHA-256 of the rest, which matches (no torn or altered file);
- the file belongs to this account and no other may write it (mode 0600 in a 0700
  directory, as we write it), and is no symbolic link: unpickling runs code, so only a file
  the account itself wrote is read, the trust the account already gives its own
  ``__pycache__``.

Files are written atomically (a temporary file in the same directory, then a rename); a
cache directory that cannot be written (a read-only home) only means no cache.
"""

from __future__ import annotations

import copyreg
import hashlib
import io
import os
import pickle
import stat
import sys
import tempfile
import time
from pathlib import Path
from types import MappingProxyType

import flows
from flows import FlowLibrary, load_library
from flows.model import frozen_mapping
from pkgline import __version__

FORMAT = b"pkgline-flows 1"
PREFIX = "flows-"


def cache_directory() -> Path:
    """Where the built library is kept (not created here)."""
    systemd = os.environ.get("CACHE_DIRECTORY")
    if systemd:
        return Path(systemd.split(":")[0])
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "pkgline"


def library_key(defs: Path = flows.DEFS) -> str:
    """SHA-256 (hex) of what the library is built from: the defs files, the flows package's
    source, the Python and pkgline versions."""
    digest = hashlib.sha256()
    digest.update(FORMAT + b"\0" + __version__.encode() + b"\0")
    digest.update(".".join(map(str, sys.version_info[:3])).encode() + b"\0")
    package = Path(flows.__file__).parent
    for kind, folder, pattern in (("defs", defs, "*.yaml"), ("code", package, "*.py")):
        found = sorted(folder.glob(pattern))
        if not found:  # an installation without the sources: nothing to key the cache on
            raise FileNotFoundError(f"no {pattern} in {folder}")
        for path in found:
            content = path.read_bytes()
            digest.update(f"{kind}/{path.name}\0{len(content)}\0".encode())
            digest.update(content)
    return digest.hexdigest()


def cached_library() -> FlowLibrary:
    """The packaged flows (``flows.load_library()``), from the cache when it holds them as
    built from the files as they are now; built and cached otherwise."""
    try:
        key = library_key()
        path = cache_directory() / f"{PREFIX}{key}.pickle"
    except (OSError, RuntimeError):  # unreadable files (the loader says so), no home
        return load_library()
    library = _read(path, key)
    if library is None:
        library = load_library()
        _write(path, key, library)
    return library


def _read(path: Path, key: str) -> FlowLibrary | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if info.st_uid != os.getuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return None
        content = file.read()
    header, _, payload = content.partition(b"\n")
    if header != _header(key, payload):
        return None
    try:
        library = pickle.loads(payload)
    except Exception:  # an older class layout under the same key cannot happen; be sure
        return None
    return library if isinstance(library, FlowLibrary) else None


def _write(path: Path, key: str, library: FlowLibrary) -> None:
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(library)
    payload = buffer.getvalue()
    directory = path.parent
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=directory, prefix=".flows-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as file:  # mkstemp: mode 0600
                file.write(_header(key, payload) + b"\n" + payload)
            Path(temporary).replace(path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        _prune(directory, keep=path)
    except OSError:
        pass  # no cache where the directory cannot be written: built on every call


STALE_S = 7 * 24 * 3600.0
"""Libraries of other keys are removed once this old (not at once: two installations of
different versions may share a home, and would otherwise remove each other's)."""


def _prune(directory: Path, keep: Path) -> None:
    now = time.time()
    for old in directory.glob(f"{PREFIX}*.pickle"):
        try:
            if old.name != keep.name and now - old.stat().st_mtime > STALE_S:
                old.unlink()
        except OSError:
            pass


def _header(key: str, payload: bytes) -> bytes:
    return b"%s %s %s" % (FORMAT, key.encode(), hashlib.sha256(payload).hexdigest().encode())


class _Pickler(pickle.Pickler):
    """The library's read-only mappings (MappingProxyType) are pickled as the dicts they
    wrap and rebuilt by :func:`flows.model.frozen_mapping`."""

    dispatch_table = copyreg.dispatch_table.copy()
    dispatch_table[MappingProxyType] = lambda mapping: (frozen_mapping, (dict(mapping),))
