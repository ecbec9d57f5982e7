"""Lay out the image-kind model's training images: one folder per kind, as the trainer's
`image-folder` data set reads them.

    python training/prepare_image_kind.py --data-dir ../shared/data --out /tmp/image-kind

- `chest_xray`: frontal chest X-rays of adults (`adult-cxr/`: NIH, RSNA, the COVID-19 image data
  collection), children (`samples/`) and MedNIST's `CXR`;
- `chest_ct`: axial chest CT slices from four sources (`covid-ct/`, `sars-cov-2-ct/`,
  `covid-ct-severity/` without its masks, MedNIST's `ChestCT`);
- `other`: MedNIST's hands, abdominal and head CT and breast MRI, and images made here (seeded):
  photographs and micrographs from scikit-image's data, documents and screenshots, blank,
  noise, gradient and shape images.

Real images are linked, never copied; made images are written as PNG.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

KINDS: dict[str, list[str]] = {
    "chest_xray": ["adult-cxr", "samples", "other-images/mednist/CXR"],
    "chest_ct": ["covid-ct", "sars-cov-2-ct", "covid-ct-severity/slices", "other-images/mednist/ChestCT"],
    "other": [
        "other-images/mednist/Hand",
        "other-images/mednist/AbdomenCT",
        "other-images/mednist/HeadCT",
        "other-images/mednist/BreastMRI",
    ],
}
# the words the card gives each kind (written to <out>/classes.json for the trainer's --classes)
CLASSES = {
    "chest_ct": {"name": "Chest CT slice", "finding": "An axial CT slice of the chest"},
    "chest_xray": {"name": "Chest X-ray", "finding": "A frontal chest radiograph"},
    "other": {"name": "Other image", "finding": "Not a chest X-ray or a chest CT slice"},
}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
MADE_PER_RECIPE = 150
SEED = 20261201


def real_images(data_dir: Path, folder: str) -> list[Path]:
    root = data_dir / folder
    if not root.is_dir():
        raise SystemExit(f"missing data folder {root} (see training/README.md for where to get it)")
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def link_real_images(data_dir: Path, out: Path) -> dict[str, int]:
    counts = {}
    for kind, folders in KINDS.items():
        (out / kind).mkdir(parents=True, exist_ok=True)
        for folder in folders:
            prefix = folder.replace("/", "_")
            paths = real_images(data_dir, folder)
            for path in paths:
                target = out / kind / f"{prefix}__{'_'.join(path.relative_to(data_dir / folder).parts)}"
                if not target.exists():
                    target.symlink_to(path.resolve())
            counts[f"{kind}/{folder}"] = len(paths)
    return counts


# --- made images -------------------------------------------------------------------------


def photographs(rng: np.random.Generator) -> Iterator[Image.Image]:
    """Random crops, turns and scales of scikit-image's photographs and micrographs."""
    import skimage.data

    names = [
        "astronaut", "binary_blobs", "brick", "camera", "cat", "cell", "checkerboard", "chelsea", "clock",
        "coffee", "coins", "colorwheel", "grass", "gravel", "horse", "hubble_deep_field",
        "immunohistochemistry", "logo", "microaneurysms", "moon", "page", "retina", "rocket", "text",
    ]  # fmt: skip
    pictures = [Image.fromarray(np.asarray(getattr(skimage.data, name)())).convert("RGB") for name in names]
    for _ in range(MADE_PER_RECIPE * 2):
        picture = pictures[rng.integers(len(pictures))]
        width, height = picture.size
        side = int(rng.integers(min(width, height) // 3, min(width, height) + 1))
        left, top = int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1))
        crop = picture.crop((left, top, left + side, top + side)).rotate(float(rng.choice([0, 90, 180, 270])))
        yield crop.convert("L") if rng.random() < 0.5 else crop


def documents(rng: np.random.Generator) -> Iterator[Image.Image]:
    """Pages of text and screenshot-like panels."""
    font = ImageFont.load_default()
    words = "patient report findings impression normal chest clinic date name study series page total".split()
    for index in range(MADE_PER_RECIPE * 2):
        width, height = int(rng.integers(200, 900)), int(rng.integers(200, 900))
        background = int(rng.integers(200, 256)) if index % 2 else int(rng.integers(0, 60))
        page = Image.new("L", (width, height), background)
        draw = ImageDraw.Draw(page)
        ink = 255 - background
        for y in range(10, height - 10, int(rng.integers(12, 30))):
            line = " ".join(rng.choice(words, size=int(rng.integers(2, 10))))
            draw.text((int(rng.integers(5, 40)), y), line, fill=ink, font=font)
        for _ in range(int(rng.integers(0, 5))):  # panels and buttons
            x, y = int(rng.integers(0, width - 20)), int(rng.integers(0, height - 20))
            draw.rectangle((x, y, x + int(rng.integers(20, 200)), y + int(rng.integers(10, 80))), outline=ink)
        yield page


def plain_images(rng: np.random.Generator) -> Iterator[Image.Image]:
    """Blank, noise, gradient and shape images of random sizes."""
    for index in range(MADE_PER_RECIPE * 2):
        width, height = int(rng.integers(32, 800)), int(rng.integers(32, 800))
        recipe = index % 4
        if recipe == 0:
            pixels = np.full((height, width), rng.integers(0, 256), dtype=np.uint8)
        elif recipe == 1:
            pixels = rng.integers(0, 256, size=(height, width), dtype=np.uint8)
        elif recipe == 2:
            ramp = np.linspace(0, 255, width)[None, :] * np.ones((height, 1))
            pixels = (ramp if rng.random() < 0.5 else ramp[:, ::-1]).astype(np.uint8)
        else:
            shapes = Image.new("L", (width, height), int(rng.integers(0, 256)))
            draw = ImageDraw.Draw(shapes)
            for _ in range(int(rng.integers(1, 12))):
                box = sorted(rng.integers(0, width, 2)) + sorted(rng.integers(0, height, 2))
                draw.ellipse((box[0], box[2], box[1], box[3]), fill=int(rng.integers(0, 256)))
            pixels = np.asarray(shapes)
        yield Image.fromarray(pixels)


RECIPES: dict[str, Callable[[np.random.Generator], Iterator[Image.Image]]] = {
    "photo": photographs,
    "document": documents,
    "plain": plain_images,
}


def write_made_images(out: Path) -> dict[str, int]:
    counts = {}
    for name, recipe in RECIPES.items():
        rng = np.random.default_rng([SEED, len(name)])
        made = 0
        for made, image in enumerate(recipe(rng), start=1):
            image.save(out / "other" / f"made_{name}_{made:04d}.png")
        counts[f"other/made {name}"] = made
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--out", type=Path, required=True)
    arguments = parser.parse_args()
    counts = link_real_images(arguments.data_dir, arguments.out) | write_made_images(arguments.out)
    (arguments.out / "classes.json").write_text(json.dumps(CLASSES, indent=2) + "\n")
    for source, count in counts.items():
        print(f"{count:6d}  {source}")


if __name__ == "__main__":
    main()
