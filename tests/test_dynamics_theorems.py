"""Theorems 4.1, 4.3 and 4.4 of the paper checked on simulated trajectories (D = 1)."""
import numpy as np
import pytest

pytest.importorskip("scipy")
from scipy.integrate import quad  # noqa: E402

from s6kit.dynamics import hidden_attention, simulate  # noqa: E402

LN2 = np.log(2.0)


def test_convergence_rates_theorem_4_1():
    """mu < 0: |x_l| decreases monotonically and sqrt(t) |x_l(t)| tends to a constant, t |P| stays bounded.

    Asymptotics (our derivation, used as a sharper check): with x_l ~ alpha_l / sqrt(t), Delta -> ln 2,
    eq. 12 gives alpha_1^2 = 1 / (2 |mu| ln 2) and alpha_l^2 = alpha_1^2 (1 - 2^-a) for l >= 2
    (the sum over j < l telescopes), and t P_11 -> mu alpha_1^2 ln 2 = -1/2.
    """
    mu, s, a = -1.2, 0.8, 0.7
    x0 = np.array([1.3, -0.6, 0.9, -1.7, 0.4, 1.1])
    t = np.logspace(0, 7, 71)
    tr = simulate(x0, mu, s, a, 1e7, t_eval=t)
    assert tr.status == "completed" and tr.blowup_time is None
    assert np.all(np.sign(tr.x) == np.sign(x0))  # no token crosses zero
    assert np.all(np.diff(np.abs(tr.x), axis=0) <= 0)  # monotone decay (Theorem 4.1, part 1)

    scaled = np.sqrt(tr.t)[:, None] * np.abs(tr.x)
    last_decade = scaled[-11:]
    assert np.all(np.abs(last_decade[-1] / last_decade[0] - 1) < 0.04)  # tends to a constant
    alpha1 = 1 / np.sqrt(2 * abs(mu) * LN2)
    alpha = np.r_[alpha1, np.full(5, alpha1 * np.sqrt(1 - 2.0**-a))]
    np.testing.assert_allclose(scaled[-1], alpha, rtol=0.02)

    tP = np.array([ti * np.abs(hidden_attention(xi, mu, s, a)).max() for ti, xi in zip(tr.t, tr.x)])
    assert tP.max() < 1.0  # t |P_lj(t)| bounded (Theorem 4.1, part 2) ...
    assert tP[-1] == pytest.approx(0.5, rel=1e-3)  # ... by its limit 1/2 (t |P_11| -> 1/2)


def test_slow_divergence_theorem_4_3():
    """mu > 0 and S_Delta x_L0 <= ... <= S_Delta x_10 <= -2.12 (eq. 13): logarithmic divergence, P -> 0."""
    mu, s, a = 1.0, -1.0, 0.5
    x0 = np.array([2.2, 2.5, 2.9, 3.4, 4.0])
    assert np.all(np.diff(s * x0) <= 0) and s * x0[0] <= -2.12
    t = np.logspace(-2, 10, 121)
    tr = simulate(x0, mu, s, a, 1e10, t_eval=t)
    assert tr.status == "completed" and tr.blowup_time is None  # no finite-time blow-up
    assert np.all(np.diff(tr.x, axis=0) > 0)  # every token increases (part 1)
    assert np.all(np.diff(tr.x, axis=1) >= 0)  # x_l >= x_{l-1} (the claim in the proof of Theorem A.7)
    # x_l <= x_l0 (x_1 / x_10)^l: the integrated form of eq. 29, hence x_l = O((ln t)^l)
    bound = x0 * (tr.x[:, :1] / x0[0]) ** np.arange(1, 6)
    assert np.all(tr.x <= bound * (1 + 1e-9))
    # x_1 = O(ln t) (Lemma A.5); more precisely lambda x_1 = ln(mu lambda t) + 3 ln x_1 + o(1)
    lam = -s
    late = tr.t > 1e4
    x1 = tr.x[late, 0]
    np.testing.assert_allclose(lam * x1, np.log(mu * lam * tr.t[late]) + 3 * np.log(x1), rtol=0.02)
    assert np.all(np.diff(x1 / np.log(tr.t[late])) < 0)  # x_1 / ln t decreases: bounded
    # slower than any power: the local exponent d ln x / d ln t is small and shrinking
    exponent = np.diff(np.log(tr.x[::10]), axis=0) / np.diff(np.log(tr.t[::10]))[:, None]
    assert np.all(exponent[-1] < 0.05) and np.all(exponent[-1] < exponent[-4])
    # hidden attention -> 0 (part 2), decreasing over the last decades
    pmax = np.array([np.abs(hidden_attention(xi, mu, s, a)).max() for xi in tr.x[-41::10]])
    assert np.all(np.diff(pmax) < 0) and pmax[-1] < 1e-10


def test_fast_divergence_blowup_time_matches_quadrature():
    """L = 1: x' = mu x^3 softplus(S_Delta x) blows up at T = int_{x0}^inf dx / (mu x^3 softplus(S_Delta x))."""
    mu, s, x0 = 0.8, 0.5, 0.7
    T = quad(lambda x: 1 / (mu * x**3 * np.logaddexp(0, s * x)), x0, np.inf, epsabs=0, epsrel=1e-12)[0]
    tr = simulate([x0], mu, s, 1.0, 10.0)
    assert tr.status == "blowup" and tr.blowup_token == 0
    assert tr.blowup_time == pytest.approx(T, rel=1e-6)
    assert np.all(np.isfinite(tr.x)) and 1e4 <= tr.x[-1, 0] < 1.1e4  # stopped at the first step past 1e4


@pytest.mark.parametrize("method", ["LSODA", "DOP853", "Radau"])
def test_blowup_found_when_the_threshold_is_out_of_reach(method):
    """With a threshold the solver cannot reach, the step size collapses (or the state overflows)
    at the singularity; that is still reported as a blow-up at the right time."""
    mu, s, x0 = 0.8, 0.5, 0.7
    T = quad(lambda x: 1 / (mu * x**3 * np.logaddexp(0, s * x)), x0, np.inf, epsabs=0, epsrel=1e-12)[0]
    tr = simulate([x0], mu, s, 1.0, 10.0, method=method, blowup_threshold=1e300)
    assert tr.status == "blowup" and tr.blowup_time == pytest.approx(T, rel=1e-6)
    assert np.all(np.isfinite(tr.x)) and tr.x[-1, 0] > 1e4


def test_fast_divergence_theorem_4_4():
    """mu > 0, S_Delta x_l0 > 0 for some l: finite-time blow-up, before the bound of the proof."""
    mu, s, a = 0.9, 1.0, 0.8
    x0 = np.array([-1.0, -0.5, 0.6, -0.3, 0.9, -1.2])
    tr = simulate(x0, mu, s, a, 100.0)
    assert tr.status == "blowup"
    # proof of Theorem A.8: x_l(t) >= (x_l0^-2 - 2 mu Delta(x_l0) t)^(-1/2) for S_Delta x_l0 > 0
    bound = min(1 / (2 * mu * np.logaddexp(0, s * v) * v * v) for v in x0 if s * v > 0)
    assert 0 < tr.blowup_time < bound
    # Remark 7: the diverging tokens come at or after the first with S_Delta x_l0 > 0 (index 2)
    assert tr.blowup_token >= 2
    assert np.all(np.isfinite(tr.x)) and tr.x.shape[1] == 6
    assert tr.t[-1] == tr.blowup_time


def test_blowup_attention_structure():
    """Theorem 4.4, second part, on the parameters of figure 3 (token 6 blows up alone).

    P_{l0 l0} and P_{l l0} (l > l0) blow up and the entries without l0 stay bounded, as the theorem
    says. The entries P_{l0 j} (j < l0) and P_{l j} (j < l0 < l) instead vanish: their factor
    exp(-a sum_{k=j+1}^{l} Delta(x_k)) contains Delta(x_l0) -> infinity when S_Delta > 0, a > 0,
    so the theorem's "if and only if l = l0 or j = l0" does not hold for l = l0 > j.
    """
    mu, s, a = 0.76, 0.59, 1.66
    x0 = np.array([0.83, 0.91, 0.64, 0.78, 0.66, 0.99, 0.68, 0.72, 0.61, 0.90])
    tr = simulate(x0, mu, s, a, 1.0)
    assert tr.status == "blowup" and tr.blowup_token == 5
    P = hidden_attention(tr.x[-1], mu, s, a)
    l0 = 5
    assert P[l0, l0] > 1e10
    assert np.all(P[l0 + 1:, l0] > 1e3)
    others = np.delete(np.delete(P, l0, axis=0), l0, axis=1)
    assert np.all(np.abs(others[l0:, l0:]) < 10) and np.all(np.abs(others[:l0, :l0]) < 10)
    assert np.all(np.abs(P[l0, :l0]) < 1e-100) and np.all(np.abs(P[l0 + 1:, :l0]) < 1e-100)


@pytest.mark.parametrize("seed", range(4))
def test_blowup_never_produces_nan(seed):
    """Violent parameters (D = 1 and D = 3): blow-up is reported and every sample is finite."""
    rng = np.random.default_rng(seed)
    tr = simulate(rng.uniform(0.5, 5.0, size=8), 50.0, 20.0, 0.1, 10.0)
    assert tr.status == "blowup" and np.all(np.isfinite(tr.x)) and np.all(np.isfinite(tr.t))
    M = np.eye(3) * 5 + rng.normal(size=(3, 3))
    tr = simulate(rng.normal(scale=3.0, size=(5, 3)), M, 5 * np.eye(3), np.full(3, 0.3), 10.0)
    assert tr.blowup_time is not None and tr.x.shape[1:] == (5, 3)
    assert np.all(np.isfinite(tr.x)) and np.all(np.isfinite(tr.t))


def test_threshold_without_blowup_signature_is_not_a_blowup():
    """Slow divergence crossing a low threshold grows too slowly to be called a finite-time blow-up."""
    x0 = np.array([2.2, 2.5, 2.9])
    tr = simulate(x0, 1.0, -1.0, 0.5, 1e12, blowup_threshold=8.0)
    assert tr.status == "threshold" and tr.blowup_time is None and tr.blowup_token is None
    assert 8.0 <= np.max(np.abs(tr.x[-1])) < 9.0
