"""Role module versions by name: a version is the SHA-256 of its source; on a board it is caps/STEM.mpy.

Layer: pure. The stem carries the start of the version, so a new version never overwrites the one that runs
(docs/modules.md).
"""

from __future__ import annotations

import hashlib


def module_sha(source: str) -> str:
    """A role module's version: the SHA-256 of its source."""
    return hashlib.sha256(source.encode()).hexdigest()


def module_stem(name: str, source: str) -> str:
    """The file a module version has on a board (caps/STEM.mpy)."""
    return stem_of(name, module_sha(source))


def stem_of(name: str, sha256: str) -> str:
    """The stem of module NAME at version SHA256: NAME_ and the version's first 10 hex digits."""
    return f"{name}_{sha256[:10]}"
