"""Everything MLflow: runs and their names, the model registry, the relay
from cluster workers to a head-local store, and the tracking server."""
