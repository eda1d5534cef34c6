"""Multi-process tests: a torchrun launcher (``harness``) and the worker modules it runs."""
