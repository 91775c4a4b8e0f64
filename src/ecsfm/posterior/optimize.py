"""Damped Gauss-Newton (Levenberg-Marquardt) on a negative log posterior from several starts at
once: the mode-finding step of the CEM sampler's Laplace stage."""

from __future__ import annotations

import numpy as np

__all__ = ["levenberg_marquardt", "LM_TRIALS"]

#: Damping factors tried at once in each iteration, relative to the current damping: one batched
#: forward call scores all four, so a rejected step costs no Jacobian.
LM_TRIALS = (0.1, 1.0, 10.0, 100.0)


def levenberg_marquardt(newton_fn, y0: np.ndarray, n_steps: int, phi_fn=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Damped Gauss-Newton on the negative log posterior from several starts at once.

    ``newton_fn(y (K, dim)) -> (phi (K,), grad (K, dim), hess (K, dim, dim))``, phi the negative
    log posterior. With ``phi_fn(y (M, dim)) -> phi (M,)`` (a forward pass only: far cheaper than
    the Jacobian), each iteration tries the steps of several dampings (``LM_TRIALS`` times the
    current one) in one batched call and takes the Jacobian only at the best point that lowers
    phi, so no Jacobian is spent on a rejected step; without it, one damping per iteration, the
    Jacobian evaluated at every trial point. Stops early once every start's accepted step lowers
    phi by less than 1e-6 relative. Returns the end points (K, dim), their phi (K,) and Hessians.
    """
    y = np.asarray(y0, np.float64)
    k, dim = y.shape
    phi, g, h = newton_fn(y)
    lam = np.ones(k)
    done = np.zeros(k, bool)
    trials = np.asarray(LM_TRIALS if phi_fn is not None else (1.0,))
    for _ in range(n_steps):
        if done.all():  # every start converged: further steps would not move it
            break
        diag = np.maximum(np.einsum("kii->ki", h), 1e-8)
        steps = np.zeros((k, trials.size, dim))
        ok = np.zeros((k, trials.size), bool)
        for j in range(k):  # K x trials small linear solves
            if not (np.all(np.isfinite(h[j])) and np.all(np.isfinite(g[j]))):
                continue
            for c, f in enumerate(trials):
                try:
                    steps[j, c] = np.linalg.solve(h[j] + lam[j] * f * np.diag(diag[j]), -g[j])
                    ok[j, c] = True
                except np.linalg.LinAlgError:
                    pass
        cand = y[:, None, :] + steps
        if phi_fn is None:
            c_phi, c_g, c_h = newton_fn(cand[:, 0])
            trial_phi = c_phi[:, None]
        else:
            trial_phi = np.asarray(phi_fn(cand.reshape(-1, dim)), np.float64).reshape(k, trials.size)
        trial_phi = np.where(ok & np.isfinite(trial_phi), trial_phi, np.inf)
        best = np.argmin(trial_phi, axis=1)
        better = trial_phi[np.arange(k), best] < phi
        if phi_fn is not None and better.any():  # the Jacobian only where a step is taken
            new_y = np.where(better[:, None], cand[np.arange(k), best], y)
            c_phi, c_g, c_h = newton_fn(new_y)
            better &= np.isfinite(c_phi) & (c_phi < phi)
        elif phi_fn is not None:
            c_phi, c_g, c_h = phi, g, h
        done |= better & (phi - c_phi < 1e-6 * (1.0 + np.abs(phi)))
        y = np.where(better[:, None], cand[np.arange(k), best], y)
        phi = np.where(better, c_phi, phi)
        g = np.where(better[:, None], c_g, g)
        h = np.where(better[:, None, None], c_h, h)
        lam = np.where(better, np.maximum(lam * trials[best] / 10.0, 1e-7), lam * trials.max() * 4.0)
    return y, phi, h
