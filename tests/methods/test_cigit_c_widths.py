"""CIGIT-C's encoders are sized from the views ("auto"), and on BDGP exactly as Table 3 (its runs unchanged)."""

import pytest

from mmclust.data import DataError
from mmclust.methods.cigit_c import CIGITC, _CIGITCNets, encoder_widths
from mmclust.repro.runner import RunSpec


def test_auto_rule_gives_table_3_on_bdgp_and_never_widens_a_narrow_view():
    assert encoder_widths("auto", 1750) == (256, 256)  # BDGP image (Table 3)
    assert encoder_widths("auto", 79) == (79, 79)  # BDGP text (Table 3)
    assert encoder_widths("auto", 20) == (20, 20)
    assert encoder_widths((64, 32), 20) == (64, 32)  # explicit widths are kept
    with pytest.raises(DataError, match="'auto'"):
        encoder_widths("wide", 10)


def test_bdgp_runs_resolve_to_the_papers_sizes_and_other_data_to_their_own():
    for name in ("bdgp", "bdgp_lateral"):
        params = RunSpec(method="cigit_c", dataset=name).resolved_params()
        assert params["image_hidden"] == (256, 256) and params["text_hidden"] == (79, 79)
    nets = _CIGITCNets(20, 59, 3, CIGITC())
    assert nets.enc_img[0].out_features == 20 and nets.enc_txt[0].out_features == 59
    assert nets.dec_txt[-1].in_features == 59
