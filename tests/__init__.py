"""The test suite: a package, so helpers are imported one way, `from tests.tiny import ...`,
here, in subprocesses (`python -m tests.multiprocess_train` from the repository root) and
in scripts given to `python -c`."""
