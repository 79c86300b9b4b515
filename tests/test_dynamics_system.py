"""The right-hand side of eq. 7/8 (eq. 9/11 for D = 1) against direct loops, and input checks."""
import math

import numpy as np
import pytest

pytest.importorskip("scipy")
from s6kit.dynamics import classify, hidden_attention, simulate, softplus  # noqa: E402
from s6kit.dynamics.system import normalize_params, velocity  # noqa: E402


def attention_loop(x, M, S, a):
    """Eq. 8 term by term: P_dlj = x_l^T M x_j Delta_d(x_j) exp(-a_d sum_{k=j+1}^{l} Delta_d(x_k))."""
    L, D = x.shape
    P = np.zeros((D, L, L))
    for d in range(D):
        delta = [math.log1p(math.exp(float(S[d] @ x[k]))) for k in range(L)]
        for l in range(L):
            for j in range(l + 1):
                P[d, l, j] = float(x[l] @ M @ x[j]) * delta[j] * math.exp(-a[d] * sum(delta[j + 1:l + 1]))
    return P


@pytest.mark.parametrize("D", [2, 3])
@pytest.mark.parametrize("seed", [0, 1])
def test_hidden_attention_matches_loop(D, seed):
    rng = np.random.default_rng(seed)
    L = 7
    x, M = rng.normal(size=(L, D)), rng.normal(size=(D, D))
    S, a = rng.normal(size=(D, D)), rng.uniform(0.0, 2.0, size=D)
    P = hidden_attention(x, M, S, a)
    assert P.shape == (D, L, L)
    np.testing.assert_allclose(P, attention_loop(x, M, S, a), rtol=1e-12, atol=1e-14)
    assert np.all(np.triu(P, k=1) == 0)


def test_hidden_attention_scalar_form_is_eq_11():
    rng = np.random.default_rng(3)
    x, mu, s, a = rng.normal(size=9), -0.8, 1.3, 0.6
    P = hidden_attention(x, mu, s, a)
    assert P.shape == (9, 9)
    ref = attention_loop(x[:, None], np.array([[mu]]), np.array([[s]]), np.array([a]))[0]
    np.testing.assert_allclose(P, ref, rtol=1e-12, atol=1e-14)
    # the same system given as 1 x 1 matrices returns the (1, L, L) tensor
    np.testing.assert_allclose(hidden_attention(x[:, None], [[mu]], [[s]], [a])[0], P, rtol=1e-15)


def test_velocity_is_eq_12():
    """D = 1: dx_l/dt = mu x_l^3 Delta(x_l) + g_l x_l with g_l of eq. 12."""
    rng = np.random.default_rng(4)
    x, mu, s, a = rng.normal(size=8), 1.7, -0.4, 0.9
    d = np.log1p(np.exp(s * x))
    g = [sum(mu * x[j] ** 2 * d[j] * math.exp(-a * d[j + 1:l + 1].sum()) for j in range(l)) for l in range(8)]
    expected = mu * x**3 * d + np.array(g) * x
    got = velocity(x[:, None], normalize_params(mu, s, a))[:, 0]
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_velocity_matches_loop_sum_d3():
    rng = np.random.default_rng(5)
    x, M, S, a = rng.normal(size=(6, 3)), rng.normal(size=(3, 3)), rng.normal(size=(3, 3)), rng.uniform(size=3)
    P = attention_loop(x, M, S, a)
    expected = np.array([[sum(P[d, l, j] * x[j, d] for j in range(6)) for d in range(3)] for l in range(6)])
    np.testing.assert_allclose(velocity(x, normalize_params(M, S, a)), expected, rtol=1e-12, atol=1e-14)


def test_softplus_is_stable():
    z = np.array([-1000.0, -40.0, -1.0, 0.0, 2.0, 40.0, 1000.0])
    with np.errstate(over="raise", invalid="raise"):
        out = softplus(z)
    assert out[-1] == 1000.0 and out[0] == 0.0
    np.testing.assert_allclose(out[1:-1], np.log1p(np.exp(z[1:-1])), rtol=1e-14)


def test_large_states_keep_attention_finite():
    """Huge cumulative Delta: exp(-a sum Delta) must underflow to 0, never overflow."""
    x = np.array([300.0, 250.0, 400.0, 1.0])
    with np.errstate(over="raise", invalid="raise"):
        P = hidden_attention(x, 0.5, 3.0, 2.0)
    assert np.all(np.isfinite(P))
    assert P[3, 0] == 0.0  # exp(-2 * (750 + 1200 + ...)) underflows


@pytest.mark.parametrize(
    "args, match",
    [
        ((np.ones(3), np.ones((2, 3)), np.ones((2, 3)), 1.0), "'mu'"),
        ((np.ones((3, 2)), np.eye(2), np.ones((3, 3)), 1.0), "'s_delta'"),
        ((np.ones((3, 2)), np.eye(2), np.eye(2), np.ones(3)), "'a'"),
        ((np.ones(3), 1.0, 1.0, -0.5), "'a' must be >= 0"),
        ((np.ones(3), float("nan"), 1.0, 1.0), "'mu' must be finite"),
        ((np.ones((3, 2)), 1.0, 1.0, 1.0), "'x'"),
        ((np.ones((3, 3)), np.eye(2), np.eye(2), 1.0), "'x'"),
        ((np.ones(3), 1.0, np.ones(2), 1.0), "'s_delta'"),
        ((np.ones(3), "abc", 1.0, 1.0), "'mu'"),
    ],
)
def test_bad_arguments_raise_value_error(args, match):
    with pytest.raises(ValueError, match=match):
        hidden_attention(*args)


def test_simulate_checks_its_arguments():
    with pytest.raises(ValueError, match="'t_max'"):
        simulate(np.ones(3), -1.0, 1.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="'t_eval'"):
        simulate(np.ones(3), -1.0, 1.0, 1.0, 1.0, t_eval=[0.0, 0.5, 0.2])
    with pytest.raises(ValueError, match="'t_eval'"):
        simulate(np.ones(3), -1.0, 1.0, 1.0, 1.0, t_eval=[0.0, 2.0])
    with pytest.raises(ValueError, match="'blowup_threshold'"):
        simulate(np.full(3, 5.0), -1.0, 1.0, 1.0, 1.0, blowup_threshold=2.0)
    with pytest.raises(ValueError, match="'x0'"):
        simulate(np.ones((3, 2)), -1.0, 1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="'method'"):
        simulate(np.ones(3), -1.0, 1.0, 1.0, 1.0, method="Euler")
    with pytest.raises(ValueError, match="'x0'"):
        classify(-1.0, 1.0, np.zeros(0))
