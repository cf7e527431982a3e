"""Shared tooling for the tests, the chaos scenarios, the load tests and the demo.

Each module does one thing, once:

- ``kube``: ``Kube``, a kubectl handle on a kubeconfig (the local cluster's by ``Kube.local()``);
- ``waiting``: ``wait_for``, polling a condition until a deadline; ``sample_during``, observing for a while;
- ``processes``: ``ChildProcess`` (its own session; SIGTERM, bounded wait, SIGKILL) and ``OperatorProcess``;
- ``rollouts``: ``model_rollout``, the one ModelRollout builder, and its analysis presets;
- ``seldon``: the digits SeldonDeployment, deploying it, deleting what a namespace holds, its traffic;
- ``recorder``: ``RolloutRecorder`` (a rollout's status, read on demand and recorded in the background)
  and ``TrafficWatch`` (every version of a SeldonDeployment's traffic, from a real watch);
- ``locust``: ``Locust`` as a bounded process and its CSV statistics;
- ``faults``: the local data plane's model servers: find them, set fault knobs, kill, probe;
- ``prometheus``: instant queries and the ingress's prediction counts;
- ``scenario``: ``Stage`` (one namespace with the live data plane, everything started there stopped on
  close) and ``Scenario`` (a Stage of its own that checks and prints invariants).

testkit imports the operator package and ``localcluster`` (never ``localcluster.demo``), and never
``tests``, ``chaos`` or ``loadtests``: ``make lint`` checks it.
"""

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
