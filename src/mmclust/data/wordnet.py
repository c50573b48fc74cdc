"""WordNet 3.0 noun synsets and their hypernym graph, read from the plain-text ``data.noun`` (wndb(5)).

MCA (and SIC before it) builds its candidate vocabulary from the first lemma of every noun synset and its
hierarchy filter walks the hypernym graph, so this module reads exactly that: each synset's byte offset (its
id), its first lemma (underscores read as spaces) and its ``@`` (hypernym) and ``@i`` (instance hypernym)
pointers. Nothing else of WordNet is needed, and no extra library: NLTK's reader refuses files outside its own
data folders and wants a ``lexnames`` file Debian does not ship.

Format (wndb(5)): lines that start with two spaces are the licence header; every other line is
``offset lex_filenum ss_type w_cnt word lex_id [word lex_id ...] p_cnt [ptr ...] [frames] | gloss`` with
``w_cnt`` two hexadecimal digits, ``p_cnt`` three decimal digits and each pointer
``symbol offset pos source/target``.

The file is found through ``MMCLUST_WORDNET`` (the file or its folder) or at Debian's standard location
(package ``wordnet-base``); see :func:`find_data_noun`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .dataset import DataError

__all__ = ["NounSynsets", "read_data_noun", "find_data_noun", "parents_of", "max_depths", "ancestors",
           "DEBIAN_PACKAGE", "ROOT_OFFSET"]

DEBIAN_PACKAGE = "wordnet-base"
ROOT_OFFSET = 1740  # entity.n.01, the root every WordNet 3.0 noun synset reaches
_STANDARD_DIRS = ("/usr/share/wordnet",)  # Debian / Ubuntu wordnet-base
_HYPERNYM_SYMBOLS = ("@", "@i")
MAX_BYTES = 64 * 1024**2  # WordNet 3.0's data.noun is 15 MB; a larger file is not one


@dataclass(frozen=True, eq=False)
class NounSynsets:
    """Noun synsets in file order: ``offsets`` (m,) int64, ``lemmas`` (first lemma of each, spaces for
    underscores) and the hypernym edges ``child[e] -> parent[e]`` (offsets, ``@`` and ``@i`` alike)."""

    offsets: np.ndarray
    lemmas: tuple
    child: np.ndarray
    parent: np.ndarray

    def __len__(self) -> int:
        return int(self.offsets.shape[0])


def find_data_noun() -> Path | None:
    """``data.noun`` from ``$MMCLUST_WORDNET`` (a file or a folder), else Debian's standard folder; None if absent."""
    env = os.environ.get("MMCLUST_WORDNET")
    candidates = [Path(env).expanduser()] if env else []
    candidates += [Path(d) for d in _STANDARD_DIRS]
    for c in candidates:
        path = c / "data.noun" if c.is_dir() else c
        if path.is_file():
            return path
    return None


def read_data_noun(path) -> NounSynsets:
    """Parse a WordNet ``data.noun``; raises :class:`DataError` naming the line on anything malformed."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such WordNet data.noun file (install Debian's {DEBIAN_PACKAGE} or set MMCLUST_WORDNET)")
    if path.stat().st_size > MAX_BYTES:
        raise DataError(f"{path.name}: {path.stat().st_size} bytes is larger than any WordNet data.noun ({MAX_BYTES} limit)")
    offsets, lemmas, child, parent = [], [], [], []
    with open(path, "rb") as fh:  # bytes, decoded line by line, so that an undecodable line is named like any other
        for lineno, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise DataError(f"{path.name} line {lineno}: not UTF-8 text ({err.reason} at byte {err.start}); "
                                f"not a WordNet data.noun") from None
            if line.startswith("  ") or not line.strip():
                continue  # licence header
            try:
                head = line.split(" | ", 1)[0].split()
                offset, ss_type, w_cnt = int(head[0]), head[2], int(head[3], 16)
                words = head[4:4 + 2 * w_cnt:2]
                pos = 4 + 2 * w_cnt
                p_cnt = int(head[pos])
                ptrs = head[pos + 1:pos + 1 + 4 * p_cnt]
                if ss_type != "n" or w_cnt < 1 or len(words) != w_cnt or len(ptrs) != 4 * p_cnt:
                    raise ValueError("counts do not match the fields")
                if head[0] != f"{offset:08d}":
                    raise ValueError(f"offset {head[0]!r} is not 8 digits")
                hypernyms = [ptrs[i + 1] for i in range(0, len(ptrs), 4)
                             if ptrs[i] in _HYPERNYM_SYMBOLS and ptrs[i + 2] == "n"]
                for target in hypernyms:
                    if len(target) != 8 or not target.isdigit():
                        raise ValueError(f"hypernym pointer offset {target!r} is not 8 digits")
            except (ValueError, IndexError) as err:
                raise DataError(f"{path.name} line {lineno}: not a wndb(5) noun synset line ({err}): {line[:80]!r}") from None
            offsets.append(offset)
            lemmas.append(words[0].replace("_", " "))
            child.extend([offset] * len(hypernyms))
            parent.extend(int(t) for t in hypernyms)
    if not offsets:
        raise DataError(f"{path.name}: no noun synsets found")
    offs = np.asarray(offsets, dtype=np.int64)
    if np.unique(offs).size != offs.size:
        raise DataError(f"{path.name}: repeated synset offsets")
    par = np.asarray(parent, dtype=np.int64)
    # a hypernym outside the file would read as a second root and silently shift every depth below it
    dangling = np.setdiff1d(par, offs)
    if dangling.size:
        raise DataError(f"{path.name}: {dangling.size} hypernym pointer(s) name synsets not in the file, e.g. "
                        f"{int(dangling[0]):08d} (a truncated or mixed-up data.noun)")
    return NounSynsets(offs, tuple(lemmas), np.asarray(child, dtype=np.int64), par)


def parents_of(child, parent) -> dict:
    """Hypernym edges as ``{offset: (parent offsets...)}``."""
    out: dict = {}
    for c, p in zip(np.asarray(child).tolist(), np.asarray(parent).tolist()):
        out.setdefault(int(c), []).append(int(p))
    return {c: tuple(ps) for c, ps in out.items()}


def ancestors(offset: int, parents: dict) -> set:
    """Every synset on any hypernym path from ``offset`` up to a root (``offset`` itself included)."""
    seen, todo = {int(offset)}, [int(offset)]
    while todo:
        for p in parents.get(todo.pop(), ()):
            if p not in seen:
                seen.add(p)
                todo.append(p)
    return seen


def max_depths(offsets, parents: dict) -> dict:
    """Longest hypernym-path length from a root (depth 0) down to each of ``offsets``.

    The longest, because MCA's hierarchy filter drops "the top gamma_h levels" of each image's hypernym paths and
    keeps their union (see ``mca.hierarchy_filter``): a synset survives iff it sits below level gamma_h on at
    least one path, i.e. iff its longest distance from a root exceeds gamma_h. Raises on a cycle.
    """
    depth: dict = {}

    def visit(o: int, stack: tuple) -> int:
        if o in depth:
            return depth[o]
        if o in stack:
            raise DataError(f"hypernym cycle through synset {o:08d}")
        ps = parents.get(o, ())
        d = 0 if not ps else 1 + max(visit(p, stack + (o,)) for p in ps)
        depth[o] = d
        return d

    return {int(o): visit(int(o), ()) for o in np.asarray(offsets).tolist()}
