"""Lay out the CT models' images for the trainer's `image-csv` data set: one folder of links to
`../shared/data` per experiment and a `labels.csv` (`filename,label,split,group,source`) whose
`split` column fixes every image's side (`source`: the data set, or the severity slice's volume, for
`--balance-sources`).

    python training/prepare_ct.py --data-dir ../shared/data --out /tmp/ct

Writes, under `--out`:

- `covid-ct/`: the COVID-CT set alone with its own source-grouped `split.csv` split.
- `sars-cov-2-ct/`: the Sao Paulo set alone, split by near-duplicate group (below).
- `both/`: both sets, each with its own split (the shipped COVID-19 model).
- `sars-to-covid-ct/`, `covid-ct-to-sars/`: trained (train and val) on one whole set, tested on
  the whole other one (cross-source validation).
- `severity/`: the severity slices (without their masks), split by `volume`
  (`SEVERITY_SPLIT`: held-out scans, see there).
- `classes-covid.json`, `classes-severity.json`: the words for the trainer's `--classes`.

The Sao Paulo files carry no patient id, and one patient gives several near-identical slices.
Those are put on one side by grouping: every slice is reduced to a 32x32 thumbnail (centre
square, zero mean, unit norm); two slices whose thumbnails correlate at `NEAR_DUPLICATE` or
more, or that are consecutive in file order and correlate at `CONSECUTIVE` or more, are
joined, and the connected groups are split (stratified by class, seeded) as whole groups.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image

SEED = 20261201
THUMBNAIL = 32
NEAR_DUPLICATE = 0.90  # thumbnail correlation of two slices of one patient, anywhere in the set
CONSECUTIVE = 0.70  # the same for neighbours in file order (slices of one scan are numbered in a row)
SARS_RATIOS = (0.6, 0.2, 0.2)
SARS_FOLDERS = {"covid": "covid", "non-covid": "non-covid"}
COVID_CT_LABELS = {"CT_COVID": "covid", "CT_NonCOVID": "non-covid"}
# held-out volumes. The volumes differ in look (Coronacases vs Radiopaedia scans, inferred from their
# brightness); training has moderate and severe slices of both looks (volumes 0, 2, 8 and 16), so
# the look cannot stand in for the grade; the test side has a severe volume (15) and a moderate one
# (10). Val (early stopping, temperature) has no severe slice: there are only three severe volumes.
SEVERITY_SPLIT = {"test": {10, 11, 14, 15}, "val": {5, 17}}
# the severity volumes self-supervised pretraining sees (training/pretrain.py): no slice of covid-ct or
# sars-cov-2-ct, so the COVID-19 model's tests stay unseen; volumes 10 and 15 are held out by the
# severity model, which is therefore trained from scratch
PRETRAINING_VOLUMES = {0, 1, 3, 4, 6, 7, 9, 10, 15}
COVID_CLASSES = {
    "non-covid": {"name": "No COVID-19 pattern", "finding": "No CT pattern of COVID-19 pneumonia found"},
    "covid": {"name": "COVID-19 pneumonia", "finding": "CT pattern of COVID-19 pneumonia suspected"},
}
SEVERITY_CLASSES = {
    "mild": {"name": "Mild", "finding": "Mild involvement: under 25% of the lung in this slice looks infected"},
    "moderate": {
        "name": "Moderate",
        "finding": "Moderate involvement: 25-50% of the lung in this slice looks infected",
    },
    "severe": {"name": "Severe", "finding": "Severe involvement: 50% or more of the lung in this slice looks infected"},
}

Row = dict[str, str]


def covid_ct_rows(data_dir: Path, prefix: str = "") -> list[Row]:
    with (data_dir / "covid-ct" / "split.csv").open(newline="") as stream:
        listed = list(csv.DictReader(stream))
    return [
        {
            "filename": prefix + row["file"],
            "label": COVID_CT_LABELS[row["file"].split("/")[0]],
            "split": row["split"],
            "group": row["group"],
            "source": "covid-ct",
        }
        for row in listed
    ]


def file_number(path: Path) -> int:
    return int(path.stem.rsplit("_", 1)[-1])


def thumbnail(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        grey = image.convert("L")
        side = min(grey.size)
        left, top = (grey.width - side) // 2, (grey.height - side) // 2
        square = grey.crop((left, top, left + side, top + side)).resize((THUMBNAIL, THUMBNAIL), Image.Resampling.BOX)
    pixels = np.asarray(square, dtype=np.float64).ravel()
    pixels -= pixels.mean()
    return pixels / (np.linalg.norm(pixels) or 1.0)


def near_duplicate_groups(paths: list[Path]) -> np.ndarray:
    """Group id per path (paths in file order): connected components of the near-duplicate graph."""
    thumbnails = np.stack([thumbnail(path) for path in paths])
    correlation = thumbnails @ thumbnails.T
    joined = correlation >= NEAR_DUPLICATE
    neighbours = np.arange(len(paths) - 1)
    joined[neighbours, neighbours + 1] |= correlation[neighbours, neighbours + 1] >= CONSECUTIVE
    parent = np.arange(len(paths))

    def root(node: int) -> int:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for left, right in zip(*np.nonzero(np.triu(joined, 1)), strict=True):
        parent[root(left)] = root(right)
    return np.array([root(node) for node in range(len(paths))])


def grouped_split(groups: list[str], ratios: tuple[float, ...], rng: np.random.Generator) -> dict[str, str]:
    """Group -> side, whole groups dealt out by size so each side gets about its share of slices."""
    names, sizes = np.unique(groups, return_counts=True)
    order = rng.permutation(len(names))
    total, sides = sizes.sum(), ("train", "val", "test")
    filled = dict.fromkeys(sides, 0)
    assigned = {}
    for index in order:
        side = max(sides, key=lambda s: ratios[sides.index(s)] * total - filled[s])  # the side furthest below its share
        assigned[str(names[index])] = side
        filled[side] += int(sizes[index])
    return assigned


def sars_rows(data_dir: Path, prefix: str = "") -> list[Row]:
    rng = np.random.default_rng(SEED)
    rows = []
    for folder, label in SARS_FOLDERS.items():
        paths = sorted((data_dir / "sars-cov-2-ct" / folder).glob("*.jpg"), key=file_number)
        groups = [f"{label}:{group}" for group in near_duplicate_groups(paths)]
        sides = grouped_split(groups, SARS_RATIOS, rng)
        rows += [
            {
                "filename": f"{prefix}{folder}/{path.name}",
                "label": label,
                "split": sides[group],
                "group": group,
                "source": "sars-cov-2-ct",
            }
            for path, group in zip(paths, groups, strict=True)
        ]
    return rows


def severity_rows(data_dir: Path) -> list[Row]:
    with (data_dir / "covid-ct-severity" / "labels.csv").open(newline="") as stream:
        listed = list(csv.DictReader(stream))
    return [
        {
            "filename": row["file"],
            "label": row["grade"],
            "split": severity_side(int(row["volume"])),
            "group": row["volume"],
            "source": f"volume-{row['volume']}",
        }
        for row in listed
    ]


def severity_side(volume: int) -> str:
    return next((side for side, volumes in SEVERITY_SPLIT.items() if volume in volumes), "train")


def retarget(rows: list[Row], train_and_val: bool) -> list[Row]:
    """Cross-source: a whole set on the train side (its val split stays val) or on the test side."""
    if train_and_val:
        return [row | {"split": "val" if row["split"] == "val" else "train"} for row in rows]
    return [row | {"split": "test"} for row in rows]


def link(out: Path, name: str, target: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    if not path.is_symlink():
        path.symlink_to(target.resolve())


def write_rows(path: Path, rows: list[Row]) -> None:
    with path.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=["filename", "label", "split", "group", "source"])
        writer.writeheader()
        writer.writerows(rows)


def lay_out(data_dir: Path, out: Path) -> dict[str, dict[str, dict[str, int]]]:
    covid_ct, sars = data_dir / "covid-ct", data_dir / "sars-cov-2-ct"
    sets = {
        "covid-ct": (covid_ct_rows(data_dir), {name: covid_ct / name for name in COVID_CT_LABELS}),
        "sars-cov-2-ct": (sars_rows(data_dir), {name: sars / name for name in SARS_FOLDERS}),
        "both": (
            covid_ct_rows(data_dir, "covid-ct/") + sars_rows(data_dir, "sars-cov-2-ct/"),
            {"covid-ct": covid_ct, "sars-cov-2-ct": sars},
        ),
        "sars-to-covid-ct": (
            retarget(sars_rows(data_dir, "sars-cov-2-ct/"), True)
            + retarget(covid_ct_rows(data_dir, "covid-ct/"), False),
            {"covid-ct": covid_ct, "sars-cov-2-ct": sars},
        ),
        "covid-ct-to-sars": (
            retarget(covid_ct_rows(data_dir, "covid-ct/"), True)
            + retarget(sars_rows(data_dir, "sars-cov-2-ct/"), False),
            {"covid-ct": covid_ct, "sars-cov-2-ct": sars},
        ),
        "severity": (severity_rows(data_dir), {"slices": data_dir / "covid-ct-severity" / "slices"}),
    }
    counts = {}
    for name, (rows, links) in sets.items():
        for link_name, target in links.items():
            link(out / name, link_name, target)
        write_rows(out / name / "labels.csv", rows)
        counts[name] = side_counts(rows)
    (out / "classes-covid.json").write_text(json.dumps(COVID_CLASSES, indent=2) + "\n")
    (out / "classes-severity.json").write_text(json.dumps(SEVERITY_CLASSES, indent=2) + "\n")
    return counts


def side_counts(rows: list[Row]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for row in rows:
        side = counts.setdefault(row["split"], {})
        side[row["label"]] = side.get(row["label"], 0) + 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--out", type=Path, required=True)
    arguments = parser.parse_args()
    for name, counts in lay_out(arguments.data_dir, arguments.out).items():
        print(name, json.dumps(counts))


if __name__ == "__main__":
    main()
