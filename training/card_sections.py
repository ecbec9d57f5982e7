"""Write the sections of a model card that are not measured by training (the intended use: the
images the model is made for, its population and known limits) into an exported card.

    python training/card_sections.py --model-dir models/covid-ct/1 --sections training/cards/covid-ct-1.json

`--sections` is a JSON object of top-level card fields (e.g. `{"intended_use": {...}}`); the card
is validated with them (`cxr_model.card.ModelCard`) before it is written, so a section that does
not conform changes nothing. An object section is merged into the card's own (one level deep).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cxr_model.card import ModelCard


def with_sections(model_dir: Path, sections: dict[str, Any]) -> ModelCard:
    """The card with `sections`: a section that is an object is merged into the card's own (so
    `{"training": {"pretraining": ...}}` adds one entry), any other replaces it."""
    fields = ModelCard.read(model_dir).model_dump(mode="json")
    for key, value in sections.items():
        fields[key] = fields[key] | value if isinstance(value, dict) and isinstance(fields.get(key), dict) else value
    return ModelCard.model_validate(fields)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--sections", type=Path, required=True)
    arguments = parser.parse_args()
    card = with_sections(arguments.model_dir, json.loads(arguments.sections.read_text()))
    card.write(arguments.model_dir)
    print(f"wrote {', '.join(json.loads(arguments.sections.read_text()))} into {arguments.model_dir / 'model.json'}")


if __name__ == "__main__":
    main()
