"""Shadow: the candidate first answers a mirror of live requests that no user gets, then goes live by steps.

- The strategy's first step is a mirror step (``steps._mirror_step``): the candidate is the deployment's
  shadow predictor, weight 0 and ``mirrorPercent`` of the live requests copied to it.
- It is judged there like anywhere (the shared gate): its errors and latency from its own executor, its
  answers against the stable's on the same requests (drift of the predicted classes; per-request agreement
  where the data plane compares them). A failure removes it before any user got an answer from it.
- It goes on after at least ``duration`` as a shadow and every metric's Pass over a full window there:
  into the declared canary steps (the first setWeight makes it live, through the gate), or, with none,
  straight to promotion.
Everything after the mirror step is the canary's steps machinery; only the traffic held differs.
"""

from __future__ import annotations

from .canary import Canary


class ShadowStrategy(Canary):
    """The canary's steps with the mirror step in front: ``steps`` runs and holds both (``run_steps``,
    ``hold_step_traffic``), so nothing here differs from the canary but the steps the spec synthesizes."""
