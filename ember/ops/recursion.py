"""The recursion of the Tiny Recursive Model (Jolicoeur-Martineau 2025, "Less is More", Fig. 3).

One network f refines an answer y and a latent z given the input x:

    latent recursion (one cycle):  n times  z <- f(x + y + z),   then once  y <- f(y + z)
    deep recursion (one supervision step): T-1 cycles without gradient, then one cycle with it

Only the last cycle is differentiated (the paper backpropagates through one full cycle, n+1
applications of f); the earlier cycles improve (y, z) for free. HRM's "1-step gradient" (the
last latent update and the answer update only) is available for the paper's ablation. Between
supervision steps the caller detaches (y, z), so a step's gradient never reaches into the
previous steps.

Letters: b batch, s positions (puzzle cells), d width.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

Network = Callable[[Tensor], Tensor]  # (b, s, d) -> (b, s, d)


def latent_recursion(f: Network, x: Tensor, y: Tensor, z: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """One cycle: n latent updates z <- f(x + y + z), then the answer update y <- f(y + z). All (b, s, d)."""
    for _ in range(n):
        z = f(x + y + z)
    y = f(y + z)
    return y, z


def deep_recursion(f: Network, x: Tensor, y: Tensor, z: Tensor, n: int, T: int,
                   one_step_gradient: bool = False) -> tuple[Tensor, Tensor]:
    """One supervision step: T-1 cycles under no_grad, then one cycle with gradient. Returns (y, z).

    one_step_gradient: differentiate only the last latent update and the answer update (HRM's 1-step
    gradient approximation, the paper's ablation): the earlier n-1 updates of the last cycle run
    under no_grad too.
    """
    graded = 1 if one_step_gradient else n  # latent updates of the last cycle that are differentiated
    with torch.no_grad():
        for _ in range(T - 1):
            y, z = latent_recursion(f, x, y, z, n)
        for _ in range(n - graded):
            z = f(x + y + z)
    return latent_recursion(f, x, y, z, graded)
