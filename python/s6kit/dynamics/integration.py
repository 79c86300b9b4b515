"""Integration of the token dynamics (eq. 7/9) with finite-time blow-up detection (Theorem 4.4)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import integrate

from .system import Params, as_token_matrix, normalize_params, velocity

# Finite-time blow-up is told apart from fast but unbounded-in-time growth (e.g. exponential) by
# the growth time tau = |x| / |dx/dt| of the largest entry: for x' ~ c x^p, tau ~ x^(1-p) shrinks as
# x grows when p > 1 (blow-up), stays constant for exponential growth and grows for slower growth.
# The integration stops at the first step that ends with max|x| >= threshold (or where the solver
# gives up); it is a blow-up when tau there is at most BLOWUP_TAU_SHRINK times tau at the last step
# whose max|x| was below REFERENCE_LEVEL times the final one (or at t = 0).
BLOWUP_TAU_SHRINK = 0.1
REFERENCE_LEVEL = 1e-2

# scipy's step-wise solvers. Stepping ourselves (rather than solve_ivp's events) never root-finds
# on an interpolant near the singularity, where the interpolant and the step can disagree.
SOLVERS = {name: getattr(integrate, name) for name in ("LSODA", "RK45", "DOP853", "Radau", "BDF")}


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

    Integration stops at the first step that ends with max|x| >= ``blowup_threshold`` (default
    1e4 * max(1, max|x0|)) or where the solver gives up (step size collapse). It is a finite-time
    blow-up (the fast-divergence scenario) when the growth time |x|/|dx/dt| has shrunk there at
    least tenfold since max|x| was below 1 % of its final value; ``blowup_time`` is then the time of
    that step (the singularity follows within the growth time, given in ``message``) and
    ``blowup_token`` the token holding the largest |entry|. Otherwise the status is "threshold"
    (e.g. exponential growth) or "failed".
    ``t_eval``: times at which to store the solution (default: the integrator's own steps); the
    state where the integration stopped early is appended as the last sample. ``method``: a scipy
    solver (LSODA by default: it switches to a stiff method where tokens are pinned, e.g. on the
    cone x^T mu x = 0 for D > 1). The returned arrays never hold NaN or inf.
    """
    p = normalize_params(mu, s_delta, a)
    x0_mat = as_token_matrix(x0, p, "x0")
    t_max, t_eval = _check_times(t_max, t_eval)
    scale = max(1.0, float(np.max(np.abs(x0_mat))))
    threshold = 1e4 * scale if blowup_threshold is None else float(blowup_threshold)
    if not (np.isfinite(threshold) and threshold > np.max(np.abs(x0_mat))):
        raise ValueError(f"argument 'blowup_threshold' must be finite and exceed max|x0|, got {blowup_threshold!r}")
    if method not in SOLVERS:
        raise ValueError(f"argument 'method' must be one of {sorted(SOLVERS)}, got {method!r}")
    shape = x0_mat.shape

    def rhs(_t, y):
        return velocity(y.reshape(shape), p).ravel()

    # Trial stages of a step that straddles a singularity may overflow; the step is then rejected
    # and retried smaller, so the warnings carry no information.
    with np.errstate(over="ignore", invalid="ignore"):
        solver = SOLVERS[method](rhs, 0.0, x0_mat.ravel(), t_max, rtol=rtol, atol=atol)
        steps, step_times = [x0_mat.ravel()], [0.0]  # every accepted step, for the blow-up test
        if t_eval is None:
            times, pending = [0.0], None
        else:
            times, pending = ([0.0] if t_eval[0] == 0 else []), t_eval[t_eval > 0]
        states = [x0_mat.ravel()] * len(times)
        stop = None
        while solver.status == "running":
            t_old = solver.t
            failure = solver.step()
            if solver.status == "failed":
                stop = f"the solver stopped ({failure})"
                break
            if not np.all(np.isfinite(solver.y)):
                stop = "the state overflowed"
                break
            steps.append(solver.y.copy())
            step_times.append(solver.t)
            if pending is None:
                times.append(solver.t)
                states.append(solver.y.copy())
            else:
                inside = pending[(pending > t_old) & (pending <= solver.t)]
                times.extend(inside)
                states.extend(solver.dense_output()(inside).T)
            if np.max(np.abs(solver.y)) >= threshold:
                stop = f"max|x| reached {threshold:g}"
                break

    if stop is not None and (not times or times[-1] < step_times[-1]):
        times.append(step_times[-1])  # the last accepted state closes the trajectory
        states.append(steps[-1])
    t, y = np.array(times), np.array(states).reshape(-1, *shape)
    finite = np.all(np.isfinite(y.reshape(len(t), -1)), axis=1)  # dense output across a singular step
    t, y = t[finite], y[finite]

    blowup_time = blowup_token = None
    if stop is None:
        status, message = "completed", f"integrated to t_max = {t_max:g}"
    else:
        end = y[-1]
        peaks = np.max(np.abs(np.array(steps)), axis=1)
        below = np.nonzero(peaks <= REFERENCE_LEVEL * np.max(np.abs(end)))[0]
        ref = steps[below[-1]].reshape(shape) if below.size else x0_mat
        tau_ref, tau_end = _growth_time(ref, p), _growth_time(end, p)
        if tau_end <= BLOWUP_TAU_SHRINK * tau_ref:
            status, blowup_time, blowup_token = "blowup", float(t[-1]), _token_of(end)
            message = (
                f"finite-time blow-up of token {blowup_token} at t = {blowup_time:.10g}: {stop}; "
                f"growth time |x|/|dx/dt| {tau_ref:.3g} -> {tau_end:.3g}"
            )
        else:
            status = "threshold" if stop.startswith("max|x|") else "failed"
            message = (
                f"{stop} at t = {t[-1]:.6g} without the finite-time blow-up signature "
                f"(growth time |x|/|dx/dt| {tau_ref:.3g} -> {tau_end:.3g}); integration stopped there"
            )

    x = y[:, :, 0] if p.scalar else y
    return Trajectory(t=t, x=x, blowup_time=blowup_time, blowup_token=blowup_token, status=status, message=message)
