"""classify() against Table 1 and against simulated behaviour (D = 1, 2, 3)."""
import numpy as np
import pytest

pytest.importorskip("scipy")
from s6kit.dynamics import classify, count_signs, simulate, sym_eigenvalues  # noqa: E402


@pytest.mark.parametrize(
    "mu, s, x0, expected",
    [
        (-0.5, 0.7, [1.0, -2.0], "convergent"),
        (-0.5, -0.7, [1.0, 2.0], "convergent"),
        (0.5, 0.7, [-1.0, -2.0], "slow-divergent"),
        (0.5, -0.7, [1.0, 2.0], "slow-divergent"),
        (0.5, 0.7, [-1.0, 2.0], "fast-divergent"),
        (0.5, -0.7, [1.0, -0.1], "fast-divergent"),
        (0.5, 0.0, [1.0, 2.0], "fast-divergent"),  # Delta = ln 2 constant: x' >= mu ln2 x^3
        (0.5, 0.7, [0.0, -2.0], "slow-divergent"),  # a zero token stays zero and does not count
    ],
)
def test_table_1(mu, s, x0, expected):
    assert classify(mu, s, np.array(x0)) == expected
    assert classify([[mu]], [[s]], np.array(x0)[:, None]) == expected  # D = 1 as 1 x 1 matrices


def test_classify_rejects_open_cases():
    with pytest.raises(ValueError, match="'mu' must be nonzero"):
        classify(0.0, 1.0, [1.0])
    with pytest.raises(ValueError, match="'x0' must have a nonzero token"):
        classify(1.0, 1.0, [0.0, 0.0])
    with pytest.raises(ValueError, match="zero eigenvalue"):
        classify(np.diag([-1.0, 0.0]), np.eye(2), np.ones((3, 2)))
    with pytest.raises(ValueError, match="'s_delta'"):
        classify(np.eye(2), np.eye(3), np.ones((3, 2)))
    with pytest.raises(ValueError, match="'x0'"):
        classify(np.eye(2), np.eye(2), np.ones((3, 3)))


def test_sym_eigenvalues_and_counts():
    M = np.array([[1.0, 4.0], [-2.0, -3.0]])  # symmetric part [[1, 1], [1, -3]]
    np.testing.assert_allclose(sym_eigenvalues(M), [-1 - np.sqrt(5), -1 + np.sqrt(5)], rtol=1e-14)
    assert count_signs([-2.0, 1e-14, 0.0, 3.0]) == (1, 1, 2)
    assert classify(M, np.eye(2), np.ones((2, 2))) == "divergent"


def _behaviour_1d(tr, x0):
    """What the trajectory does, in Table 1's words."""
    if tr.status == "blowup":
        return "fast-divergent"
    growing = np.all(np.diff(np.abs(tr.x), axis=0) >= 0) and np.all(np.abs(tr.x[-1]) > np.abs(x0))
    shrinking = np.all(np.diff(np.abs(tr.x), axis=0) <= 0) and np.all(np.abs(tr.x[-1]) < 0.5 * np.abs(x0))
    if tr.status == "completed" and growing:
        return "slow-divergent"
    if tr.status == "completed" and shrinking:
        return "convergent"
    return "unclear"


@pytest.mark.parametrize("seed", range(12))
def test_classify_agrees_with_simulation_d1(seed):
    rng = np.random.default_rng(seed)
    kind = ("convergent", "slow-divergent", "fast-divergent")[seed % 3]
    mu = rng.uniform(0.3, 2.0) * (-1 if kind == "convergent" else 1)
    s = rng.uniform(0.3, 1.5) * rng.choice([-1, 1])
    x0 = rng.uniform(0.3, 2.0, size=5) * rng.choice([-1, 1], size=5)
    if kind == "slow-divergent":
        x0 = -np.sign(s) * np.abs(x0)
    elif kind == "fast-divergent" and not np.any(s * x0 > 0):
        x0[2] = np.sign(s) * abs(x0[2])
    assert classify(mu, s, x0) == kind
    t_max = 200.0
    if kind == "fast-divergent":  # past the blow-up bound of Theorem A.8's proof
        t_max = 2 * min(1 / (2 * mu * np.logaddexp(0, s * v) * v * v) for v in x0 if s * v > 0)
    tr = simulate(x0, mu, s, rng.uniform(0.1, 2.0), t_max, t_eval=np.linspace(0, t_max, 50))
    assert _behaviour_1d(tr, x0) == kind, tr.message


def _draw_definite(rng, D, sign):
    """mu with a sign-definite symmetric part (eigenvalues sign * U(0.3, 1.5)) plus a skew part."""
    Q, _ = np.linalg.qr(rng.normal(size=(D, D)))
    skew = rng.normal(scale=0.5, size=(D, D))
    M = Q @ np.diag(sign * rng.uniform(0.3, 1.5, size=D)) @ Q.T + (skew - skew.T)
    return M, rng.normal(scale=0.7, size=(D, D)), rng.uniform(0.2, 1.5, size=D), rng.normal(size=(4, D))


@pytest.mark.parametrize("D", [2, 3])
@pytest.mark.parametrize("seed", range(6))
def test_classify_agrees_with_simulation_higher_dim(D, seed):
    """The appendix-B conjecture, on draws where it is expected to hold: mu's symmetric part
    definite. Then d|x_1|^2/dt = 2 (x_1^T mu x_1) sum_d Delta_d(x_1) x_d1^2 has the sign of mu, so the
    first token provably shrinks or grows; the test checks that every token follows."""
    rng = np.random.default_rng(100 * D + seed)
    sign = -1 if seed % 2 == 0 else 1
    M, S, a, x0 = _draw_definite(rng, D, sign)
    kind = classify(M, S, x0)
    assert kind == ("convergent" if sign < 0 else "divergent")
    tr = simulate(x0, M, S, a, 200.0, t_eval=[0.0, 50.0, 200.0])
    start, end = np.linalg.norm(x0, axis=1), np.linalg.norm(tr.x[-1], axis=1)
    if kind == "convergent":  # every token shrinks, still at about the 1/sqrt(t) pace of D = 1
        middle = np.linalg.norm(tr.x[1], axis=1)
        assert tr.status == "completed" and np.all(end < start) and np.all(end < 0.7 * middle)
        assert np.max(end) < 0.2
    else:
        assert tr.status in ("blowup", "threshold") or np.max(end) > 10 * np.max(start), tr.message


def test_mixed_eigenvalues_can_freeze_tokens():
    """Beyond the conjecture: with one positive and one negative eigenvalue, this draw sends all four
    tokens onto one isotropic line of mu (x^T mu x = 0), where every P_dlj vanishes: they stop at
    finite nonzero values, neither converging nor diverging, although classify() says "divergent"."""
    rng = np.random.default_rng(7 + 77 * 2)
    M, S = rng.normal(size=(2, 2)), rng.normal(scale=0.7, size=(2, 2))
    a, x0 = rng.uniform(0.2, 1.5, size=2), rng.normal(size=(4, 2))
    assert classify(M, S, x0) == "divergent"
    tr = simulate(x0, M, S, a, 1e4, t_eval=[0.0, 1e2, 1e4])
    assert tr.status == "completed"
    np.testing.assert_allclose(tr.x[2], tr.x[1], rtol=1e-6)  # stationary
    assert 1.0 < np.max(np.abs(tr.x[2])) < 100.0
    np.testing.assert_allclose(np.einsum("ld,de,le->l", tr.x[2], M, tr.x[2]), 0.0, atol=1e-6)
