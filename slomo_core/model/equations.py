"""The paper's two closed-form equations over any array type: numpy on the host, torch in the network.

The weight-free interpolator runs them on numpy arrays, so a run without the network never imports torch
(about 1.1 s of a short command's start-up on a 2-core CPU); the network runs them on tensors through
``model.synthesis``. ``t`` must already broadcast against the arrays, in their dtype (a float32 scalar for
one time, a N x 1 x 1 x 1 tensor for one time per batch element): the arithmetic is then the same in both.
"""

from __future__ import annotations

from typing import TypeVar

Array = TypeVar("Array")  # numpy.ndarray or torch.Tensor: only + - * / are used


def intermediate_flows(flow01: Array, flow10: Array, t) -> tuple[Array, Array]:
    """F_t->0 and F_t->1 from the bidirectional flows (paper eq. 4).

    F_t->0 = -(1-t) t F_0->1 + t^2 F_1->0 ;  F_t->1 = (1-t)^2 F_0->1 - t (1-t) F_1->0.
    """
    flow_t0 = -(1 - t) * t * flow01 + t * t * flow10
    flow_t1 = (1 - t) * (1 - t) * flow01 - t * (1 - t) * flow10
    return flow_t0, flow_t1


def fuse(warped0: Array, warped1: Array, visibility0: Array, visibility1: Array, t, eps: float) -> Array:
    """I_t = ((1-t) V_t0 g(I0) + t V_t1 g(I1)) / ((1-t) V_t0 + t V_t1 + eps)  (paper eq. 1).

    ``eps`` is the model's ``WarpConvention.fusion_eps`` (0 in the public code, whose visibilities are a
    sigmoid and its complement, so the denominator never vanishes for t inside (0, 1)).
    """
    w0 = (1 - t) * visibility0
    w1 = t * visibility1
    return (w0 * warped0 + w1 * warped1) / (w0 + w1 + eps)
