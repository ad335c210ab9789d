"""One single-threaded call of each MKL VML-backed torch function, before any parallel call.

torch runs contiguous CPU float unary ops (``exp``, ``log``, ``sqrt``, ...) through MKL VML, one
chunk per intra-op thread. The oneMKL 2024.2 that the torch wheel bundles picks each function's
kernel on its first call; when several threads make that first call at once, one thread's chunk
can run the low-accuracy kernel (pytorch/pytorch issue 188792, fix PR 188791; gone in oneMKL 2025).
Measured here (``benchmarks/predict_parity.py --first-calls 100``): 3 of 200 fresh processes
predicted half a 40x56 depth map ``exp``'d by that kernel, 4e-5 relative off (the export parity
test's 1-in-4 CI failure); with this warm-up 0 of 200, and every map bitwise what it was.
"""

from __future__ import annotations

import functools

VML_OPS = ("exp", "log", "log2", "log10", "log1p", "expm1", "sqrt", "rsqrt", "sin", "cos", "tan", "asin",
           "acos", "atan", "sinh", "cosh", "tanh", "erf", "erfc", "erfinv", "sigmoid", "reciprocal")


@functools.cache
def resolve_vml() -> None:
    """Settle every VML kernel with a one-element call on this thread (4.8 ms, once per process)."""
    import torch

    for dtype in (torch.float32, torch.float64):
        one = torch.full((1,), 0.5, dtype=dtype)
        for op in VML_OPS:
            getattr(torch, op)(one)
