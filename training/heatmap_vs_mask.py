"""Does the severity model look where the infection is? Its class-activation map (of the grade it
decides) on each held-out slice, against the slice's infection and lung masks (covid-ct-severity/).

    python training/heatmap_vs_mask.py --model-dir models/covid-ct-severity/1 --layout /tmp/ct/severity

Per slice: the share of the map's positive mass inside the infection mask, the share inside the
lung mask, and whether the map's peak lies in the infection (the "pointing game"); printed as
means over the test split, next to the share of the image the masks cover (what a map spread
evenly would score).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from cxr_model.card import ONNX_FILE, ModelCard
from cxr_model.preprocessing import preprocess_bytes
from trainer.export import onnx_outputs

MASKS = {"infection": "infection-masks", "lung": "lung-masks"}


def test_slices(layout: Path) -> list[str]:
    rows = (layout / "labels.csv").read_text().splitlines()[1:]
    return [row.split(",")[0] for row in rows if row.split(",")[2] == "test"]


def mask(data_dir: Path, kind: str, slice_file: str, size: tuple[int, int]) -> np.ndarray:
    path = data_dir / "covid-ct-severity" / MASKS[kind] / Path(slice_file).with_suffix(".png").name
    return np.asarray(Image.open(path).convert("L").resize(size, Image.Resampling.NEAREST)) > 127


def upsampled(heatmap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    positive = np.clip(heatmap, 0.0, None).astype(np.float32)
    return np.asarray(Image.fromarray(positive).resize(size, Image.Resampling.BILINEAR))


def compare(model_dir: Path, layout: Path, data_dir: Path) -> dict[str, float]:
    card = ModelCard.read(model_dir)
    files = test_slices(layout)
    images = np.stack([preprocess_bytes((layout / name).read_bytes(), card.preprocessing) for name in files])
    outputs = onnx_outputs((model_dir / ONNX_FILE).read_bytes(), images, ["probabilities", "class_activation"])
    decided = outputs["probabilities"].argmax(axis=1)
    rows = []
    for name, heatmaps, grade in zip(files, outputs["class_activation"], decided, strict=True):
        size = Image.open(layout / name).size
        heat = upsampled(heatmaps[grade], size)
        infection, lung = mask(data_dir, "infection", name, size), mask(data_dir, "lung", name, size)
        total = float(heat.sum()) or 1.0
        peak = np.unravel_index(int(heat.argmax()), heat.shape)
        rows.append(
            [
                heat[infection].sum() / total,
                heat[lung].sum() / total,
                float(infection[peak]),
                infection.mean(),
                lung.mean(),
            ]
        )
    mean = np.mean(rows, axis=0)
    keys = ("map_in_infection", "map_in_lung", "peak_in_infection", "infection_area", "lung_area")
    return {"slices": float(len(rows))} | {key: round(float(value), 4) for key, value in zip(keys, mean, strict=True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--layout", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    arguments = parser.parse_args()
    print(json.dumps(compare(arguments.model_dir, arguments.layout, arguments.data_dir), indent=2))


if __name__ == "__main__":
    main()
