"""The onnxruntime settings every server in the peer benchmark uses (imported by the peers' runtimes,
which run with this folder on their path, and by peer_benchmark.py)."""

from __future__ import annotations

import onnxruntime as ort


def session_options(threads: int = 1) -> ort.SessionOptions:
    """One session's settings: `threads` for intra- and inter-op, full graph optimisation, no memory
    arena, no thread spinning (the inference service's defaults)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.enable_cpu_mem_arena = False
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options
