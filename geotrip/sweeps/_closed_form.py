r"""Closed-form gradient angles: one fused pass over :math:`a, p, n`, then :math:`O(1)` work
per triplet.

This is the default method of :func:`geotrip.gradient_angles`; the implementation is in
``geotrip.core._closed_form``.

Every raw and Riemannian triplet gradient of the
built-in family is a linear combination of :math:`a, p, n`. Write them in the basis

.. math:: b_0 = a,\quad b_1 = \delta_p = p - \sigma_p a,\quad b_2 = \delta_n = n - \sigma_n a,
          \qquad \sigma_x = \operatorname{sign}(a\cdot x)\ (\text{+1 at } 0),

whose Gram matrix, for unit vectors, is

.. math:: M = \begin{pmatrix} 1 & -\sigma_p g_{11}/2 & -\sigma_n g_{22}/2\\
          \cdot & g_{11} & g_{12} \\ \cdot & \cdot & g_{22}\end{pmatrix},\quad
          g_{11} = \|\delta_p\|^2,\ g_{22} = \|\delta_n\|^2,\ g_{12} = \delta_p\cdot\delta_n

(using :math:`a\cdot\delta_p = -\sigma_p\|\delta_p\|^2/2`, exact on the sphere). One
pass over the data computes the sums :math:`\|p \mp a\|^2`, :math:`\|n \mp a\|^2`,
:math:`(p \mp a)\cdot(n \mp a)`, :math:`a\cdot(x \mp a)`; everything else (the angles
:math:`\theta_{ap} = 2\operatorname{atan2}(\sqrt{g_{11}}, \sqrt{4 - g_{11}})` for
:math:`\sigma_p = 1`, the weights, the hinge slopes, the gradients and the eight angles
between them) costs :math:`O(1)` per triplet, in orthonormal coordinates of
:math:`\operatorname{span}(a, p, n)` (the Cholesky factor of :math:`M`, see
``geotrip.core._frame_angles``): each gradient block is a 3-vector, the Riemannian joint
gradient a 4-vector, and each angle :math:`\operatorname{atan2}(\|u\wedge v\|, u\cdot v)`.
The differences :math:`p \mp a` are formed elementwise, so near-coincident and
near-antipodal pairs keep full relative accuracy, as in :func:`geotrip.angle`. For 256
triplets or more the pass takes only the five sums of :math:`p - a, n - a` (vectorised over
lanes, about twice as fast) and recomputes the near-antipodal pairs
(:math:`\|x + a\|^2 < \varepsilon^{1/4}`) from the twelve. The path is thus bound by
reading :math:`a, p, n` from memory.

**Where M is nearly singular** (:math:`a, p, n` nearly on one great circle: the tangents
:math:`u_{a\to p}, u_{a\to n}` at an angle :math:`\psi` near 0 or :math:`\pi`), the sums
give :math:`\sin\psi` only to about :math:`\sqrt{\varepsilon}` and a quadratic form
:math:`c^\top M c` loses accuracy like the square of the condition number: in float32
this alone cost up to 1.57 rad in the anchor angles (10^6 uniform triplets in d = 3, against
float64). Triplets with :math:`\sin^2\psi < \sqrt{\varepsilon}` are therefore recomputed
with the gradients formed as d-vectors from the same coefficients (a fixed number of them
gathered; all of them when there are more, e.g. on :math:`S^1`), and so is every triplet of
an input of fewer than 256: worst error in that test 0.0094 rad, against 0.018 rad for
float32 autodiff.

Raw gradients by the closed form of the ambient form (:attr:`geotrip.Distance.ambient_kind`,
hinge slope :math:`s`): ``"chord_sq"`` :math:`(2s(n-p),\, 2s(p-a),\, 2s(a-n))`;
``"chord"`` :math:`s\big(e_{ap} - e_{an},\, -e_{ap},\, e_{an}\big)` with
:math:`e_{ax} = (a-x)/\|a-x\|`; ``"cosine"`` :math:`s(n-p,\, -a,\, a)`; ``"angle"``
(``geodesic``, ``geodesic_sq``, and :func:`geotrip.make_distance` without ``ambient``: the
ambient form is :math:`g` of the scale-invariant angle) equal the Riemannian gradients.
Riemannian gradients use the per-pair weights (:func:`geotrip.triplet_grads_closed_form`).
Distances of kind ``"custom"`` use their weight for the Riemannian part and autodiff of
their ambient form for the raw part.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax

from ..core._distances import Distance
from ..core._distances import distance as get_distance
from ..core._gradients import DEFAULT_MARGINS, _gradient_angles_jit, _margin_pair, _pair
from ..core._losses import check_triplet_inputs

__all__ = ["gradient_angles_closed_form"]

Array = jax.Array


def gradient_angles_closed_form(
    a: Array,
    p: Array,
    n: Array,
    *,
    distances: Sequence[str | Distance] = ("chord_sq", "geodesic"),
    margins: Sequence[float | Array | None] = DEFAULT_MARGINS,
    soft: bool = False,
) -> dict[str, Array]:
    r"""Same output as :func:`geotrip.gradient_angles`, from closed forms (module docstring).

    One pass over ``a, p, n`` (five or twelve fused sums of length :math:`d`), then
    :math:`O(1)` work per triplet; no autodiff. Assumes unit vectors (as every
    triplet function does): the Gram entries :math:`a\cdot\delta` use
    :math:`\|a\| = \|x\| = 1` exactly. The hinge activity uses the profile
    :math:`g(\theta)` with the accurate angle, so it can differ from the autodiff
    path (which evaluates the ambient form) only for triplets within rounding of
    the hinge boundary.

    Args:
      a, p, n: unit vectors of shape ``(..., d)``, any :math:`d \ge 1`.
      distances, margins, soft: as in :func:`geotrip.gradient_angles`.

    Returns:
      The dict of :func:`geotrip.gradient_angles` (angles in radians, NaN where
      undefined, ``defined/...`` masks, ``active/A``, ``active/B``).

    >>> import jax.numpy as jnp, geotrip as gt
    >>> a, p, n = gt.parametric_triplet(1.0, 0.8, 2.0, dim=3)  # a hard triplet
    >>> out = gt.gradient_angles_closed_form(a, p, n, margins=(0.2, 0.1))
    >>> bool(out["active/A"]), bool(out["active/B"])
    (True, True)
    >>> round(float(jnp.degrees(out["riemannian/joint"])), 1)  # chord_sq vs geodesic
    3.7
    >>> ref = gt.gradient_angles(a, p, n, margins=(0.2, 0.1), method="autodiff")
    >>> bool(jnp.allclose(out["riemannian/joint"], ref["riemannian/joint"], atol=1e-5))
    True
    """
    dA, dB = (get_distance(d) for d in _pair(distances, "distances"))
    mA, mB = _margin_pair(margins, dA, dB)
    a, p, n = check_triplet_inputs(a, p, n)
    return _gradient_angles_jit(a, p, n, mA, mB, dA=dA, dB=dB, soft=soft, method="closed_form")
