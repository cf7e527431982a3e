"""The local Seldon data plane: a small stand-in for Seldon Core v1's controller and executor and for Istio.

It runs each SeldonDeployment predictor's model server as a process (from the model server's own
environment), routes requests through one loopback ingress with Seldon's path layout, honouring
``traffic`` and ``shadow``, and exports the executor's request metrics, so the operator's PromQL is the
same here as on a real cluster. It is a test and demo fixture, not part of the operator.
"""
