"""Injected faults for the reliability tests: the hooks that `faults.*` config turns on.

Owns: raising or killing the Python worker in a model task (first attempt only), a
CUDA-style out-of-memory error on model batches, corrupting fetched bytes before
decode, failing a model stage's commit once. Every hook is a no-op unless the config
names a fault; `config.py` refuses faults in the paper profile. Pure Python (torch
only when an out-of-memory error is raised); may import the core modules only.
`spark.udf`, `stages` and (through a callable) `fetch` call it. docs/faults.md.
"""

from kale_spark.faults.hooks import (
    InjectedFault,
    byte_corrupter,
    fail_commit_once,
    inject_oom,
    read_fault_log,
    task_faults,
)

__all__ = [
    "InjectedFault",
    "byte_corrupter",
    "fail_commit_once",
    "inject_oom",
    "read_fault_log",
    "task_faults",
]
