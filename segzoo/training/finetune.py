"""Fine-tuning trained weights (a recipe's ``model.pretrained``, ``segzoo train --init``): what the new run
inherits from them unless its recipe states otherwise.

Inherited: the weights' preprocessing (their normalisation, not ImageNet's default) and their training
requirements (``ModelMeta.training``, e.g. a frozen encoder BatchNorm for a backbone whose BN was folded). Zoo
weights published before files carried requirements take them from the recipe their manifest row names. A recipe
that states a different value wins, with a warning naming both.
"""

from __future__ import annotations

import warnings
from typing import Any

from segzoo.core.config import Preprocessing

__all__ = ["requirements_of", "inherit"]

# requirements a fine-tune inherits, each a train.* setting of the recipe
INHERITED = ("freeze_encoder_bn",)


def requirements_of(model: Any, source: str) -> dict[str, Any]:
    """The training requirements of the weights ``source`` that ``model`` was loaded from: the file's own
    (``meta.training``), else, for a zoo name, those of the recipe its manifest row names."""
    own = {k: v for k, v in model.meta.training.items() if k in INHERITED}
    if own:
        return own
    from segzoo.storage.manifest import read_manifest

    name, _, tag = source.partition(".")
    row = next((e for e in read_manifest() if e.get("model") == name and e.get("tag") == (tag or e.get("tag"))),
               None)
    if row is None or not row.get("recipe"):
        return {}
    from segzoo.training.recipe import Recipe

    published = Recipe.load(row["recipe"])
    return {key: getattr(published.train, key) for key in INHERITED}


def inherit(recipe: Any, model: Any, source: str) -> Preprocessing:
    """Apply what a fine-tune of ``source`` inherits to ``recipe.train`` (in place, said once each) and return the
    preprocessing to train with: the weights' own unless the recipe states one (then a warning if they differ)."""
    for key, value in requirements_of(model, source).items():
        ours = getattr(recipe.train, key)
        if f"train.{key}" in recipe.stated:
            if ours != value:
                warnings.warn(f"recipe sets train.{key}={ours!r}, but the weights {source!r} require {value!r} "
                              "for further training; keeping the recipe's", UserWarning, stacklevel=2)
        elif ours != value:
            setattr(recipe.train, key, value)
            print(f"segzoo: fine-tuning {source!r}: train.{key}={value!r}, as its weights require", flush=True)
    own = model.meta.preprocessing
    stated = recipe.augment.preprocessing_config()
    if stated is None:
        return own
    if stated != own:
        warnings.warn(f"recipe's augment.preprocessing {stated.to_dict()} replaces the normalisation the weights "
                      f"{source!r} were trained with ({own.to_dict()})", UserWarning, stacklevel=2)
    return stated
