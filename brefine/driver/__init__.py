"""What runs on the driver: validated options, the local Ray cluster, the
TorchTrainer of a run, ``train`` and ``submit``. Nothing here runs in a worker."""
