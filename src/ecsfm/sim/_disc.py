"""Diffusion to a disc in an insulating plane, edge included: the disc's exact admittance.

A disc of radius r has two length scales, r and the diffusion length. Its uniform-concentration
admittance (the mean flux density answering a surface deviation held uniform over the disc, in the
Laplace domain) is exactly

    Y(s) = sqrt(s D) + (D / r) g(p),     p = r sqrt(s / D),

with ``sqrt(s D)`` the planar (Cottrell) part and ``g`` the edge's. ``g`` is a universal function:
``g(0) = 4 / pi`` (Saito's steady state, ``4 n F D C r``), ``g -> 1`` as ``p -> infinity`` (the
short-time edge term ``n F D C pi r`` of Aoki and Osteryoung), and between them it is what
``galerkin_edge_admittance`` computes.

**How g is computed (``galerkin_edge_admittance``).** The Laplace-domain problem is the modified
Helmholtz equation in the half space, with the disc's surface value uniform and no flux through the
insulator around it. With the flux density expanded in ``q_m(rho) ~ (1 - rho^2)^-1/2
P_2m(sqrt(1 - rho^2))``, whose Hankel transforms are the spherical Bessel functions ``j_2m(k)``, the
surface value is ``int_0^inf Q(k) J0(k rho) k / sqrt(k^2 + p^2) dk``, and the Galerkin equations
are ``sum_n a_n int_0^inf j_2m j_2n k / sqrt(k^2 + p^2) dk = delta_m0``; the mean flux is ``2 a_0``.
The basis carries the edge's inverse-square-root singularity exactly, so the expansion converges
spectrally (``g`` agrees to 1e-7 between 16 and 24 basis functions for p up to 100), where a
finite-difference grid would lose order to the singularity at the edge. The k integrals are
Gauss-Legendre on panels (geometric near k ~ p), with the closed-form tail of ``j_l j_l'`` beyond.

**How the solver uses it.** ``g(s r^2 / D)`` is approximated by ``1 + sum_k w_k lambda_k /
(s r^2 / D + lambda_k)`` with the ``EDGE_POLES`` / ``EDGE_WEIGHTS`` below (non-negative weights on
fixed, log-spaced poles; fitted by ``fit_edge_kernel`` to ``galerkin_edge_admittance`` on
1e-4 <= p <= 400; their sum is ``4 / pi - 1`` to rounding, so the steady state is exact). The
admittance is then off by at most 3e-5 relative over that range. In time, the edge flux is ``(D /
r) (u + sum_k w_k z_k)``, each ``z_k`` the surface deviation ``u`` low-pass filtered at rate
``lambda_k D / r^2``: a few ODE states per species beside the planar modes, stepped exactly for
``u`` linear over a step (constant over the step after a potential jump). The planar modes receive
the flux less the edge flux, so the disc costs a little more than a sphere.

**What is exact and what is not.** The surface value is taken uniform over the disc. That is exact
wherever the surface concentrations follow the potential: reversible (Nernstian) couples, and any
couple at its diffusion limit (chronoamperometry, steady-state plateaus), which is where the
literature's disc results (Saito, Shoup-Szabo, Aoki's disc voltammograms) apply and where the tests
check it. With slow kinetics the true surface concentration varies over the disc (the edge is
better supplied); the model applies the kinetics to the uniform-admittance surface value, the
uniformly accessible approximation, and does not resolve that variation.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

__all__ = ["EDGE_POLES", "EDGE_WEIGHTS", "edge_admittance", "edge_coefficients", "edge_step", "galerkin_edge_admittance", "fit_edge_kernel"]

#: poles lambda_k of the edge kernel, in units of D / r^2 (``fit_edge_kernel``)
EDGE_POLES = np.array([
    1e-08, 5.4555947811685146e-08, 2.976351441631319e-07, 1.6237767391887209e-06, 8.858667904100832e-06,
    4.8329302385717524e-05, 0.00026366508987303556, 0.0014384498882876629, 0.007847599703514606,
    0.04281332398719387, 0.23357214690901212, 1.2742749857031321, 6.951927961775591, 37.92690190732238,
    206.913808111479, 1128.8378916846884, 6158.482110660255, 183298.071083243, 1000000.0,
])
#: their weights w_k; ``sum(EDGE_WEIGHTS) = 4 / pi - 1``
EDGE_WEIGHTS = np.array([
    1.958775602786495e-05, 3.321062132708748e-05, 1.805737807978107e-05, 0.00020461858109635243,
    0.00018001090026589051, 0.0009085306855385558, 0.0013552958399288598, 0.004348252107543949,
    0.008334779473752357, 0.02210508275488118, 0.04589067983222331, 0.09359887483614547, 0.06104785806736044,
    0.01711816006387857, 0.012243865383800678, 0.0019067852944602694, 0.003247556614140715,
    9.409473241156763e-05, 0.000584243812293174,
])


def edge_admittance(p):
    """The fitted edge term ``g(p)`` (dimensionless; ``p = r sqrt(s / D)``, real or complex, any
    shape): ``1 + sum_k w_k lambda_k / (p^2 + lambda_k)``. Works on numpy and JAX arrays."""
    s = p * p
    out = 1.0
    for lam, w in zip(EDGE_POLES.tolist(), EDGE_WEIGHTS.tolist()):
        out = out + w * lam / (s + lam)
    return out


def galerkin_edge_admittance(p, basis: int = 24, k_max: float = 2e4) -> np.ndarray:
    """The disc's edge admittance ``g(p)`` for real ``p >= 0`` (array), by the Galerkin method of
    the module docstring with ``basis`` functions, the k integrals cut at ``k_max`` (beyond it, the
    tail's closed form). Accurate to ~1e-7 for p <= 400 at the defaults; at larger p the edge layer
    is thinner than the basis resolves (there ``g - 1`` is within 1 % of ``0.25 / p``). Costs ~0.5 s per p (numpy)."""
    from scipy import special

    xg, wg = np.polynomial.legendre.leggauss(12)
    sign = (-1.0) ** np.subtract.outer(np.arange(basis), np.arange(basis))
    out = []
    for p_ in np.atleast_1d(np.asarray(p, dtype=np.float64)).ravel():
        if p_ < 0:
            raise ValueError(f"p: must be >= 0, got {p_}")
        near = np.geomspace(min(p_, 1.0) * 1e-4, np.pi / 2, 40) if p_ > 0 else np.array([np.pi / 2])
        edges = np.concatenate([[0.0], near, np.arange(np.pi, k_max + np.pi / 2, np.pi / 2)])
        lo, hi = edges[:-1, None], edges[1:, None]
        k = (0.5 * (hi - lo) * xg + 0.5 * (hi + lo)).ravel()
        w = (0.5 * (hi - lo) * wg).ravel() * k / np.sqrt(k * k + p_ * p_)
        j = np.stack([special.spherical_jn(2 * m, k) for m in range(basis)])
        big = edges[-1]
        a = (j * w) @ j.T + sign / (2.0 * big) * (1.0 - p_ * p_ / (6.0 * big * big))
        out.append(2.0 * np.linalg.solve(a, np.eye(basis)[0])[0] - p_)
    return np.asarray(out).reshape(np.shape(p))


def fit_edge_kernel(n_poles: int = 20, p_max: float = 400.0) -> tuple[np.ndarray, np.ndarray, float]:
    """Refit ``EDGE_POLES`` / ``EDGE_WEIGHTS``: non-negative least squares on ``n_poles`` poles
    log-spaced over [1e-8, 1e6], against ``galerkin_edge_admittance`` on 160 values of p in
    [1e-4, p_max], each weighted by ``1 / (g + p / 30)``, with ``sum w = 4 / pi - 1`` imposed.
    Returns (poles, weights) with the zero weights dropped, and the largest relative error of the
    admittance ``p + g``. Takes ~2 minutes."""
    from scipy.optimize import nnls

    p = np.geomspace(1e-4, p_max, 160)
    g = galerkin_edge_admittance(p)
    lam = np.geomspace(1e-8, 1e6, n_poles)
    basis = lam / (p[:, None] ** 2 + lam)
    row = 1.0 / (g + p / 30.0)
    big = 1e4  # the weight of the steady-state row: sum w = 4/pi - 1
    w, _ = nnls(np.vstack([basis * row[:, None], big * np.ones(n_poles)]),
                np.concatenate([(g - 1.0) * row, [big * (4.0 / np.pi - 1.0)]]))
    keep = w > 0
    err = float(np.max(np.abs((1.0 + basis @ w - g) / (p + g))))
    return lam[keep], w[keep], err


def edge_coefficients(x):
    """The edge filters' exact step over ``x = mu h`` (2S, K, [B]): ``z_k(new) = ex z_k + c0 u_prev
    + c1 u_new`` for ``u`` linear over the step; after a potential jump ``u`` is constant at its new
    value, ``c0 = 0`` and ``c1 = 1 - ex`` (``c1_jump``). Returns (ex, c0, c1, c1_jump). Series for
    small ``x`` keep ``c0`` and ``c1`` accurate in float32."""
    ex = jnp.exp(-x)
    small = x < 1e-2
    xs = jnp.where(small, 1.0, x)
    frac = -jnp.expm1(-xs) / xs  # (1 - e^-x) / x
    c1 = jnp.where(small, x * (0.5 - x * (1.0 / 6.0 - x / 24.0)), 1.0 - frac)
    c0 = jnp.where(small, x * (0.5 - x * (1.0 / 3.0 - x / 8.0)), frac - ex)
    return ex, c0, c1, -jnp.expm1(-x)


def edge_step(z, u_prev, coefficients, jump, weights):
    """One solver step of the edge filters ``z_k' = mu_k (u - z_k)`` with ``edge_coefficients``
    (``jump``: this step follows a potential jump). The edge flux's known part is ``hist = sum_k w_k
    (ex z_k + c0 u_prev)`` and its weight on the new surface deviation ``gain = 1 + sum_k w_k c1``:
    edge flux = ``(D / r) (gain u_new + hist)``. Returns (ex, c0, c1, hist, gain)."""
    ex, c0, c1, c1_jump = coefficients
    c0, c1 = jnp.where(jump, 0.0, c0), jnp.where(jump, c1_jump, c1)
    hist = jnp.sum(weights * (ex * z + c0 * u_prev[:, None]), axis=1)
    gain = 1.0 + jnp.sum(weights * c1, axis=1)
    return ex, c0, c1, hist, gain
