"""Reliability evidence: the whole stack under load and faults, reconciled afterwards.

`stack` starts every process the checks own, `load` drives POST /classify, `reconcile`
compares rows with objects, `faults` breaks one dependency while load runs, `evidence`
collects the numbers and prints the long form's table (scripts/verify.sh).
"""
