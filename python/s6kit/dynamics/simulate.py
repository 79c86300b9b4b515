"""Integration of the token dynamics (eq. 7/9) with finite-time blow-up detection (Theorem 4.4)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.integrate import solve_ivp

from .system import Params, as_token_matrix, normalize_params, velocity

# Finite-time blow-up is told apart from fast but unbounded-in-time growth (e.g. exponential) by
# the growth time tau = |x| / |dx/dt| of the largest entry: for x' ~ c x^p, tau ~ x^(1-p) shrinks as
# x grows when p > 1 (blow-up), stays constant for exponential growth and grows for slower growth.
# The integration stops when max|x| reaches the threshold; it is a blow-up when tau there is at most
# BLOWUP_TAU_SHRINK times tau at the last crossing of threshold * REFERENCE_LEVEL (or at t = 0).
BLOWUP_TAU_SHRINK = 0.1
REFERENCE_LEVEL = 1e-2


@dataclass
class Trajectory:
    """A solution of eq. 7/9.

    t: (T,) times; x: (T, L) for D = 1, (T, L, D) otherwise; both finite everywhere.
    blowup_time / blowup_token: when and which token (0-based) diverged in finite time, else None.
    status: "completed" (reached t_max), "blowup" (finite-time blow-up), "threshold" (|x| passed
    the threshold but grew too slowly for a finite-time blow-up; integration stopped there) or
    "failed" (the integrator gave up for another reason). message: a sentence on what happened.
    """

    t: np.ndarray
    x: np.ndarray
    blowup_time: float | None
    blowup_token: int | None
    status: str
    message: str


def _check_times(t_max, t_eval):
    try:
        t_max = float(t_max)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"argument 't_max' must be a positive number, got {t_max!r}") from exc
    if not (np.isfinite(t_max) and t_max > 0):
        raise ValueError(f"argument 't_max' must be a positive finite number, got {t_max!r}")
    if t_eval is None:
        return t_max, None
    t_eval = np.asarray(t_eval, dtype=np.float64)
    if t_eval.ndim != 1 or t_eval.size == 0:
        raise ValueError(f"argument 't_eval' must be a non-empty 1-D array, got shape {t_eval.shape}")
    if not (np.all(np.isfinite(t_eval)) and np.all(np.diff(t_eval) > 0)):
        raise ValueError("argument 't_eval' must be finite and strictly increasing")
    if t_eval[0] < 0 or t_eval[-1] > t_max:
        raise ValueError(f"argument 't_eval' must lie in [0, t_max] = [0, {t_max}]")
    return t_max, t_eval


def _token_of(state: np.ndarray) -> int:
    """The token (row of an (L, D) state) holding the largest |entry|."""
    return int(np.unravel_index(np.argmax(np.abs(state)), state.shape)[0])


def _growth_time(state: np.ndarray, p: Params) -> float:
    """|x| / |dx/dt| of the largest entry of an (L, D) state (0 when dx/dt overflows)."""
    with np.errstate(over="ignore", invalid="ignore"):
        rate = velocity(state, p)
    flat = np.argmax(np.abs(state))
    speed = abs(rate.flat[flat])
    if not np.isfinite(speed):
        return 0.0
    return abs(state.flat[flat]) / speed if speed > 0 else np.inf


def simulate(
    x0,
    mu,
    s_delta,
    a,
    t_max: float,
    *,
    t_eval=None,
    method: str = "LSODA",
    rtol: float = 1e-9,
    atol: float = 1e-12,
    blowup_threshold: float | None = None,
) -> Trajectory:
    """Integrate eq. 9/11 (D = 1) or eq. 7/8 (D > 1) from x(0) = x0 on [0, t_max].

    D = 1: x0 (L,) and scalars mu = S_C^T S_B, s_delta = S_Delta, a. D > 1: x0 (L, D), mu (D, D),
    s_delta (D, D), a (D,) (A_d = -a_d I; a >= 0, see ``system.py`` on the sign).

    Finite-time blow-up (the fast-divergence scenario) stops the integration when some |x| reaches
    ``blowup_threshold`` (default 1e4 * max(1, max|x0|)) and grows there in a time far shorter than
    the elapsed time, or when the step size collapses; ``blowup_time`` is then the time of that
    event (the singularity follows within the growth time |x|/|dx/dt|, reported in ``message``).
    ``t_eval``: times at which to store the solution (default: the integrator's own steps);
    the blow-up state is appended as the last sample. The returned arrays never hold NaN or inf.
    """
    p = normalize_params(mu, s_delta, a)
    x0_mat = as_token_matrix(x0, p, "x0")
    t_max, t_eval = _check_times(t_max, t_eval)
    scale = max(1.0, float(np.max(np.abs(x0_mat))))
    threshold = 1e4 * scale if blowup_threshold is None else float(blowup_threshold)
    if not (np.isfinite(threshold) and threshold > np.max(np.abs(x0_mat))):
        raise ValueError(f"argument 'blowup_threshold' must be finite and exceed max|x0|, got {blowup_threshold!r}")
    shape = x0_mat.shape

    def rhs(_t, y):
        return velocity(y.reshape(shape), p).ravel()

    def crossing(_t, y):
        return threshold - np.max(np.abs(y))

    def reference_crossing(_t, y):
        return REFERENCE_LEVEL * threshold - np.max(np.abs(y))

    crossing.terminal = True
    crossing.direction = -1
    reference_crossing.direction = -1

    # Trial stages of a step that straddles a singularity may overflow; the step is then rejected
    # and retried smaller, so the warnings carry no information.
    with np.errstate(over="ignore", invalid="ignore"):
        sol = solve_ivp(
            rhs, (0.0, t_max), x0_mat.ravel(), method=method, t_eval=t_eval,
            rtol=rtol, atol=atol, events=[crossing, reference_crossing],
        )

    t, y = sol.t, sol.y.T.reshape(-1, *shape)
    hit = sol.status == 1 and sol.t_events[0].size > 0
    if hit and (t.size == 0 or t[-1] < sol.t_events[0][0]):
        t = np.append(t, sol.t_events[0][0])
        y = np.concatenate([y, sol.y_events[0][0].reshape(1, *shape)])
    finite = np.all(np.isfinite(y.reshape(len(t), -1)), axis=1)
    t, y = t[finite], y[finite]

    blowup_time = blowup_token = None
    if sol.status == 0:
        status, message = "completed", f"integrated to t_max = {t_max:g}"
    else:
        ref = sol.y_events[1][-1].reshape(shape) if sol.t_events[1].size else x0_mat
        tau_ref, tau_end = _growth_time(ref, p), _growth_time(y[-1], p)
        how = f"max|x| reached {threshold:g}" if hit else f"the solver stopped ({sol.message})"
        if tau_end <= BLOWUP_TAU_SHRINK * tau_ref:
            status, blowup_time, blowup_token = "blowup", float(t[-1]), _token_of(y[-1])
            message = (
                f"finite-time blow-up of token {blowup_token} at t = {blowup_time:.10g}: {how}; "
                f"growth time |x|/|dx/dt| {tau_ref:.3g} -> {tau_end:.3g}"
            )
        else:
            status = "threshold" if hit else "failed"
            message = (
                f"{how} at t = {t[-1]:.6g} without the finite-time blow-up signature "
                f"(growth time |x|/|dx/dt| {tau_ref:.3g} -> {tau_end:.3g}); integration stopped there"
            )

    x = y[:, :, 0] if p.scalar else y
    return Trajectory(t=t, x=x, blowup_time=blowup_time, blowup_token=blowup_token, status=status, message=message)
