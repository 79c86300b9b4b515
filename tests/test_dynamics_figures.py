"""Figures 1, 2, 3 and 6: the PNGs are written and the data behind each shows its caption's scenario."""
import struct

import numpy as np
import pytest

pytest.importorskip("scipy")
pytest.importorskip("matplotlib")
from s6kit.dynamics import hidden_attention, make_figures, sym_eigenvalues  # noqa: E402
from s6kit.dynamics.figures import FIGURE_1, FIGURE_2, FIGURE_3, FIGURE_6  # noqa: E402
from s6kit.dynamics.system import normalize_params, velocity  # noqa: E402


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def test_make_figures_writes_the_pngs(tmp_path):
    paths = make_figures(tmp_path / "figs")
    assert [p.name for p in paths] == ["fig1.png", "fig2.png", "fig3.png", "fig6.png"]
    sizes = [png_size(p) for p in paths]
    assert sizes == [(1200, 400)] * 3 + [(1500, 500)]
    assert all(p.stat().st_size > 20_000 for p in paths)


def test_figure_1_tokens_and_attention_vanish():
    assert FIGURE_1.classify() == "convergent"
    tr = FIGURE_1.simulate()
    x0 = np.array(FIGURE_1.x0)
    assert tr.status == "completed"
    assert np.all(np.diff(np.abs(tr.x), axis=0) <= 0)
    assert np.max(np.abs(tr.x[-1])) < 0.1 * np.max(np.abs(x0))
    P0, P1 = (np.abs(hidden_attention(x, FIGURE_1.mu, FIGURE_1.s_delta, FIGURE_1.a)).max() for x in (x0, tr.x[-1]))
    assert P1 < 0.01 * P0


def test_figure_2_log_rate_divergence():
    assert FIGURE_2.classify() == "slow-divergent"
    tr = FIGURE_2.simulate()
    x0 = np.array(FIGURE_2.x0)
    assert tr.status == "completed" and tr.t[-1] == FIGURE_2.t_max
    assert np.all(np.diff(tr.x, axis=0) > 0)  # all tokens grow ...
    late = tr.t >= 1e3
    exponent = np.diff(np.log(tr.x[late]), axis=0) / np.diff(np.log(tr.t[late]))[:, None]
    assert np.all(exponent < 0.1)  # ... slower than t^0.1 on the last three decades: log rate
    # "the one with larger initial value diverges faster"
    assert np.all(np.diff(tr.x[-1] - x0) > 0)
    # attention -> 0, the second column far faster than the first
    P = hidden_attention(tr.x[-1], FIGURE_2.mu, FIGURE_2.s_delta, FIGURE_2.a)
    assert np.abs(P).max() < 1e-5
    assert np.abs(P[1:, 1]).max() < 1e-10 * np.abs(P[:, 0]).max()


def test_figure_3_blows_up_in_finite_time():
    assert FIGURE_3.classify() == "fast-divergent"
    tr = FIGURE_3.simulate(num_points=None)
    x0 = np.array(FIGURE_3.x0)
    mu, s = FIGURE_3.mu, FIGURE_3.s_delta
    assert tr.status == "blowup" and tr.blowup_token == int(np.argmax(x0))
    assert tr.blowup_time < 1 / (2 * mu * np.logaddexp(0, s * x0.max()) * x0.max() ** 2)
    assert np.all(np.isfinite(tr.x)) and np.max(tr.x[-1]) >= 0.99e4


@pytest.mark.parametrize(
    "case, eigenvalues",
    [(FIGURE_6[0], [0.190429, 1.39646]), (FIGURE_6[1], [-0.741258, 0.846723]), (FIGURE_6[2], [-0.967445, -0.552276])],
)
def test_figure_6_panels(case, eigenvalues):
    """Appendix B's eigenvalues; A and B diverge, C converges (the caption's order of panels)."""
    np.testing.assert_allclose(sym_eigenvalues(np.array(case.mu)), eigenvalues, rtol=1e-5)  # 6 digits in the paper
    assert case.classify() == case.scenario
    tr = case.simulate(num_points=None)
    norms = np.linalg.norm(tr.x, axis=2)
    if case.scenario == "divergent":
        assert tr.status in ("blowup", "threshold") and np.max(norms[-1]) > 1e4
    else:
        assert tr.status == "completed" and np.all(norms[-1] < 0.1 * norms[0])


def test_figure_6b_growth_is_fast_but_not_a_blowup():
    """Panel B: token 4 grows about exponentially (its growth time |x|/|dx/dt| stays near 7e-5 while
    |x| grows from 1e2 to 1.6e4), so the threshold stop is not called a finite-time blow-up."""
    case = FIGURE_6[1]
    tr = case.simulate(num_points=None)
    assert tr.status == "threshold" and tr.blowup_time is None
    params = normalize_params(np.array(case.mu), np.array(case.s_delta), case.a)
    taus = []
    for x in tr.x:
        if np.max(np.abs(x)) > 1e2:
            k = np.unravel_index(np.argmax(np.abs(x)), x.shape)
            taus.append(abs(x[k] / velocity(x, params)[k]))
    assert len(taus) > 5 and max(taus) < 2 * min(taus)
