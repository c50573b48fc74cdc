"""Reproduction harness: references, verdicts, runner, store, report."""
