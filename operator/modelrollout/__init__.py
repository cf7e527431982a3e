"""modelrollout: a Kubernetes operator that rolls out ML model versions on Seldon deployments safely."""

__version__ = "0.1.0"
