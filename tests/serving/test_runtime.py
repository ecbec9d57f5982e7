"""onnxruntime settings: execution providers, graph optimisation, threads."""

from pathlib import Path

import numpy as np
import onnxruntime as ort

from inference.model import OnnxModel
from inference.settings import Settings

COMMITTED_MODEL = Path(__file__).resolve().parents[2] / "models" / "pneumonia-xray" / "2"


def test_unavailable_providers_are_skipped_and_cpu_serves(monkeypatch):
    monkeypatch.setenv("INFERENCE_EXECUTION_PROVIDERS", '["CUDAExecutionProvider", "CPUExecutionProvider"]')
    monkeypatch.setenv("INFERENCE_GRAPH_OPTIMIZATION_LEVEL", "disable")
    monkeypatch.setenv("INFERENCE_INTRA_OP_THREADS", "1")
    settings = Settings()
    assert settings.execution_providers == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    model = OnnxModel.load(COMMITTED_MODEL, settings)
    expected = [name for name in settings.execution_providers if name in ort.get_available_providers()]
    assert model.session.get_providers() == expected
    options = model.session.get_session_options()
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    assert options.intra_op_num_threads == 1
    assert options.enable_cpu_mem_arena is False  # the default: memory goes back after large batches
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"  # idle threads sleep


def test_thread_spinning_can_be_turned_on(monkeypatch):
    monkeypatch.setenv("INFERENCE_ALLOW_SPINNING", "true")
    model = OnnxModel.load(COMMITTED_MODEL, Settings())
    options = model.session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    assert options.get_session_config_entry("session.inter_op.allow_spinning") == "1"


def test_cpu_memory_arena_can_be_turned_on(monkeypatch):
    monkeypatch.setenv("INFERENCE_CPU_MEMORY_ARENA", "true")
    model = OnnxModel.load(COMMITTED_MODEL, Settings())
    assert model.session.get_session_options().enable_cpu_mem_arena is True


def test_optimisation_levels_do_not_change_results(data_dir):
    batch = np.load(data_dir / "pneumoniamnist" / "pneumoniamnist_28.npz")["test_images"][:32, ..., None].astype(np.float32)
    results = []
    for level in ("disable", "all"):
        model = OnnxModel.load(COMMITTED_MODEL, Settings(graph_optimization_level=level))
        results.append(model.predict({"image": batch})["probabilities"])
    np.testing.assert_allclose(results[0], results[1], rtol=1e-5, atol=1e-6)
