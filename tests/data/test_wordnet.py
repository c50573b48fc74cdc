"""The WordNet data.noun reader: a small real excerpt kept in the repository, and the installed file when present."""

from pathlib import Path

import numpy as np
import pytest

from mmclust.data import DataError
from mmclust.data.wordnet import (DEBIAN_PACKAGE, ROOT_OFFSET, ancestors, find_data_noun, max_depths, parents_of,
                                  read_data_noun)

FIXTURE = Path(__file__).parent / "fixtures" / "data.noun"
DOG, CAT, ROCK, HEGIRA, MAMMAL, ANIMAL, CANINE, DOMESTIC_ANIMAL = (
    2084071, 2121620, 9416076, 60548, 1861778, 15388, 2083346, 1317541)


@pytest.fixture(scope="module")
def fixture_synsets():
    return read_data_noun(FIXTURE)


def test_fixture_synsets_lemmas_and_pointers(fixture_synsets):
    s = fixture_synsets
    assert len(s) == 26 and s.offsets[0] == ROOT_OFFSET and s.lemmas[0] == "entity"
    lemma = dict(zip(s.offsets.tolist(), s.lemmas))
    assert lemma[DOG] == "dog" and lemma[1930] == "physical entity"  # first lemma, underscores as spaces
    assert lemma[DOMESTIC_ANIMAL] == "domestic animal" and lemma[HEGIRA] == "Hegira"
    parents = parents_of(s.child, s.parent)
    assert set(parents[DOG]) == {CANINE, DOMESTIC_ANIMAL}  # two '@' pointers; '~' hyponyms and '#m' ignored
    assert parents[HEGIRA] == (58743,)  # '@i' instance hypernym counts as a parent
    assert ROOT_OFFSET not in parents  # the root has none
    # every hypernym target is in the excerpt, and every synset reaches entity
    assert set(s.parent.tolist()) <= set(s.offsets.tolist())
    assert all(ROOT_OFFSET in ancestors(o, parents) for o in s.offsets.tolist())


def test_depths_take_the_longest_path(fixture_synsets):
    parents = parents_of(fixture_synsets.child, fixture_synsets.parent)
    d = max_depths([ROOT_OFFSET, 1930, ANIMAL, MAMMAL, DOG, DOMESTIC_ANIMAL], parents)
    # entity 0 -> physical_entity 1 -> object 2 -> whole 3 -> living_thing 4 -> organism 5 -> animal 6
    assert d[ROOT_OFFSET] == 0 and d[1930] == 1 and d[ANIMAL] == 6 and d[DOMESTIC_ANIMAL] == 7
    # dog: via canine (animal 6, chordate 7, vertebrate 8, mammal 9, placental 10, carnivore 11, canine 12) -> 13,
    # not via domestic_animal (8)
    assert d[MAMMAL] == 9 and d[DOG] == 13


def test_cycle_and_malformed_lines_are_errors(tmp_path):
    with pytest.raises(DataError, match="cycle"):
        max_depths([1], {1: (2,), 2: (1,)})
    bad = tmp_path / "data.noun"
    bad.write_text("  licence line\n00001740 03 n 02 entity 0 003 ~ 00001930 n 0000 | gloss\n")  # w_cnt says 2 words
    with pytest.raises(DataError, match="line 2"):
        read_data_noun(bad)
    with pytest.raises(DataError, match=DEBIAN_PACKAGE):
        read_data_noun(tmp_path / "absent")
    bad.write_text("  only a licence\n")
    with pytest.raises(DataError, match="no noun synsets"):
        read_data_noun(bad)


def test_find_data_noun_follows_mmclust_wordnet(monkeypatch, tmp_path):
    monkeypatch.setenv("MMCLUST_WORDNET", str(FIXTURE.parent))
    assert find_data_noun() == FIXTURE
    monkeypatch.setenv("MMCLUST_WORDNET", str(FIXTURE))
    assert find_data_noun() == FIXTURE


def test_installed_wordnet_noun_file():
    path = find_data_noun()
    if path is None:
        pytest.skip(f"WordNet data.noun not found: install the Debian package {DEBIAN_PACKAGE} or set MMCLUST_WORDNET")
    s = read_data_noun(path)
    assert len(s) == 82115 and s.lemmas[:5] == ("entity", "physical entity", "abstraction", "thing", "object")
    parents = parents_of(s.child, s.parent)
    roots = [o for o in s.offsets.tolist() if o not in parents]
    assert roots == [ROOT_OFFSET]  # one root, so every synset reaches entity 00001740 (no cycles: depths exist)
    depth = max_depths(s.offsets, parents)
    assert min(depth.values()) == 0 and all(v > 0 for o, v in depth.items() if o != ROOT_OFFSET)
    assert np.isin(s.parent, s.offsets).all()


@pytest.mark.parametrize("body, named", [
    (b"00001930 03 n 01 physical_entity 0 001 @ 0000x740 n 0000 | g\n", "line 3.*hypernym pointer offset"),
    (b"00001930 03 n 01 physical_entity 0 001 @ 00009999 n 0000 | g\n", "00009999"),  # dangling: no such synset
    (b"00001930 03 n 01 physical\xff_entity 0 000 | g\n", "line 3.*UTF-8"),
])
def test_broken_lines_are_named(tmp_path, body, named):
    path = tmp_path / "data.noun"
    path.write_bytes(b"  licence line\n00001740 03 n 01 entity 0 001 ~ 00001930 n 0000 | gloss\n" + body)
    with pytest.raises(DataError, match=named):
        read_data_noun(path)
    # the same file with the line repaired reads
    path.write_bytes(b"  licence line\n00001740 03 n 01 entity 0 001 ~ 00001930 n 0000 | gloss\n"
                     b"00001930 03 n 01 physical_entity 0 001 @ 00001740 n 0000 | g\n")
    assert read_data_noun(path).parent.tolist() == [ROOT_OFFSET]
