"""Orchestration of the sweep: config, CLI, Ray Tune trainable, bootstrap tasks, MLflow tracking."""

import time as _time

#: When this process first imported the package: the start of a trial worker's imports (see ``sweeper.timing``).
IMPORTS_STARTED_AT = _time.time()
