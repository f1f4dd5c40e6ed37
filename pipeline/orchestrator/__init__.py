"""The framework-free parent process of one conversion: the runner (stages in worker processes,
judging, localisation), the worker pool, publishing a run directory atomically, and locks."""
