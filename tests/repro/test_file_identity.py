"""Identity of runs on a user's file: the file's bytes and how it is read, never its path or name."""

import numpy as np
import pytest

from mmclust.repro.comparison import file_run_specs
from mmclust.repro.runner import run_id_of
from tests.data.mvfiles import write_v5


@pytest.fixture
def mat(tmp_path, rng):
    y = np.repeat(np.arange(1, 4), 10)
    views = [rng.normal(size=(30, d)) + y[:, None] for d in (4, 3)]
    return write_v5(tmp_path / "mine.mat", views, y)


def _spec(path, **options):
    (spec,), _ = file_run_specs(path, ["kmeans"], [0], options=options)
    return spec


def test_a_renamed_or_moved_file_is_the_same_run(mat, tmp_path):
    first = run_id_of(_spec(mat))
    (tmp_path / "sub").mkdir()
    moved, renamed = tmp_path / "sub" / "mine.mat", tmp_path / "scenes_v2.mat"
    moved.write_bytes(mat.read_bytes())
    renamed.write_bytes(mat.read_bytes())
    assert run_id_of(_spec(moved)) == first
    spec = _spec(renamed)
    assert spec.dataset == "file:scenes_v2"  # shown under its new name ...
    assert run_id_of(spec) == first  # ... but the same computation


def test_one_changed_byte_is_a_new_run(mat):
    first = run_id_of(_spec(mat))
    blob = bytearray(mat.read_bytes())
    blob[-1] ^= 1  # the last byte of the last array's data
    changed = mat.with_name("changed.mat")
    changed.write_bytes(bytes(blob))
    assert run_id_of(_spec(changed)) != first


@pytest.mark.parametrize("options", [{"views": ["0"]}, {"samples_in": "rows"}, {"views_key": "X"}, {"labels_key": "Y"}])
def test_every_read_option_is_in_the_identity(mat, options):
    assert run_id_of(_spec(mat, **options)) != run_id_of(_spec(mat))


def test_file_runs_are_named_apart_from_registry_data_sets(tmp_path, rng):
    y = np.repeat(np.arange(1, 4), 10)
    path = write_v5(tmp_path / "bdgp.mat", [rng.normal(size=(30, 4)), rng.normal(size=(30, 3))], y)
    spec = _spec(path)
    assert spec.dataset == "file:bdgp"  # a paper's report selects "bdgp": a user's file of that name never mixes in


def test_dec_and_jecl_refresh_their_target_at_least_once_an_epoch_on_a_file(mat):
    # 30 rows in batches of 256: one minibatch an epoch, where DEC's 140 would refresh every 140 epochs
    specs, notes = file_run_specs(mat, ["dec", "jecl", "kmeans"], [0])
    params = {s.method: s.resolved_params() for s in specs}
    assert params["dec"]["update_interval"] == 1 and params["jecl"]["update_interval"] == 1
    assert "update_interval" not in params["kmeans"]
    assert any(n.startswith("dec: target refreshed every 1 minibatches (once an epoch of 30 rows") for n in notes)
    (spec,), _ = file_run_specs(mat, ["dec"], [0], overrides={"batch_size": 8})
    assert spec.resolved_params()["update_interval"] == 4  # ceil(30 / 8)
    (spec,), _ = file_run_specs(mat, ["dec"], [0], overrides={"batch_size": 8}, split="test=14")
    assert spec.resolved_params()["update_interval"] == 2  # 16 training rows
    (spec,), _ = file_run_specs(mat, ["dec"], [0], overrides={"update_interval": 140})
    assert spec.resolved_params()["update_interval"] == 140  # the user's choice stands
