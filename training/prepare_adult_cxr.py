"""Write the label file of the adult chest X-ray model: one row per image of `adult-cxr/`, for the
trainer's `image-csv` data set (`--data-dir <data>/adult-cxr --labels-csv <out>`).

    python training/prepare_adult_cxr.py --out /tmp/adult-cxr.csv                        # the shipped split
    python training/prepare_adult_cxr.py --out /tmp/without-nih.csv --hold-out nih       # leave one source out

Columns: `filename` (relative to adult-cxr/), `label` (normal, pneumonia), `split` (train, val,
test), `source` (nih, rsna-normal, ieee8023) and `patient`. Splits are drawn per source, by patient
(no patient on two sides), stratified by each patient's most common label, seeded:

- `nih/`: the patient is the file name's part before `_` (`<patient>_<study>.png`);
- `ieee8023/`: `patientid` of its `metadata.csv`;
- `rsna-normal/`: no patient id is published, so each file is its own group.

Without `--hold-out` every source is split 60/20/20. With `--hold-out a,b` those sources are the
whole test split (a hospital the model never saw) and the others are split 80/20 into train and val.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from trainer.data import image_files, split_indices

SOURCES = ("nih", "rsna-normal", "ieee8023")
LABELS = ("normal", "pneumonia")
SPLITS = ("train", "val", "test")
SHIPPED_RATIOS = (0.6, 0.2, 0.2)
HOLD_OUT_RATIOS = (0.8, 0.2)  # train, val of the sources kept
SEED = 42
COLUMNS = ("filename", "label", "split", "source", "patient")


def patients_of(root: Path, source: str, paths: list[Path]) -> list[str]:
    if source == "nih":
        return [f"nih:{path.stem.split('_')[0]}" for path in paths]
    if source == "ieee8023":
        with (root / "ieee8023" / "metadata.csv").open(newline="") as stream:
            patient = {row["file"]: row["patientid"] for row in csv.DictReader(stream)}
        return [f"ieee8023:{patient[str(path.relative_to(root))]}" for path in paths]
    return [f"{source}:{path.stem}" for path in paths]


def source_rows(root: Path, source: str) -> list[dict[str, str]]:
    paths = image_files(root / source)
    if not paths:
        raise SystemExit(f"no images under {root / source} (see training/README.md for where to get them)")
    return [
        {"filename": str(path.relative_to(root)), "label": path.parent.name, "source": source, "patient": patient}
        for path, patient in zip(paths, patients_of(root, source, paths), strict=True)
    ]


def assign_splits(rows: list[dict[str, str]], sides: tuple[str, ...], ratios: tuple[float, ...]) -> None:
    """Patient-grouped, label-stratified split of rows (of one source) into `sides`."""
    label_ids = np.array([LABELS.index(row["label"]) for row in rows])
    groups = np.array([row["patient"] for row in rows])
    for side, indices in zip(sides, split_indices(label_ids, groups, ratios, SEED), strict=True):
        for index in indices:
            rows[index]["split"] = side


def label_rows(root: Path, held_out: tuple[str, ...]) -> list[dict[str, str]]:
    rows = []
    for source in SOURCES:
        kept = source_rows(root, source)
        if source in held_out:
            for row in kept:
                row["split"] = "test"
        elif held_out:
            assign_splits(kept, ("train", "val"), HOLD_OUT_RATIOS)
        else:
            assign_splits(kept, SPLITS, SHIPPED_RATIOS)
        rows += kept
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = Path(__file__).resolve().parents[2] / "shared" / "data"
    parser.add_argument("--data-dir", type=Path, default=data / "adult-cxr", help="the adult-cxr folder")
    parser.add_argument("--out", type=Path, required=True, help="the CSV to write")
    parser.add_argument(
        "--hold-out", default="", help=f"comma-separated sources for test only, of {', '.join(SOURCES)}"
    )
    arguments = parser.parse_args()
    held_out = tuple(name for name in arguments.hold_out.split(",") if name)
    unknown = sorted(set(held_out) - set(SOURCES))
    if unknown or len(held_out) == len(SOURCES):
        raise SystemExit(f"--hold-out: name some (not all) of {', '.join(SOURCES)}, not {arguments.hold_out!r}")
    rows = label_rows(arguments.data_dir, held_out)
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    with arguments.out.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    for side in SPLITS:
        counts = {
            f"{source}/{label}": sum(
                1 for row in rows if (row["split"], row["source"], row["label"]) == (side, source, label)
            )
            for source in SOURCES
            for label in LABELS
        }
        print(side, {name: count for name, count in counts.items() if count})


if __name__ == "__main__":
    main()
