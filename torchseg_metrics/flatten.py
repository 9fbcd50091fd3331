"""Turn per-class vectors of a result dict into scalar entries, for ``LightningModule.log_dict``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor


def flatten_for_logging(
    result: Mapping[str, Tensor], class_names: Sequence[str] | None = None, *, separator: str = "/"
) -> dict[str, Tensor]:
    """Scalars stay; a vector ``v`` under key ``k`` becomes ``k/<name>`` entries, one per class.

    Class names default to the class indices. NaN entries (undefined classes) are kept, so the
    logged keys do not change from epoch to epoch.

    Example:
        >>> import torch
        >>> result = {"miou": torch.tensor(0.5), "iou_per_class": torch.tensor([0.25, 0.75])}
        >>> flatten_for_logging(result, ["sky", "road"])
        {'miou': tensor(0.5000), 'iou_per_class/sky': tensor(0.2500), 'iou_per_class/road': tensor(0.7500)}
    """
    flat: dict[str, Tensor] = {}
    for key, value in result.items():
        if value.ndim == 0:
            flat[key] = value
            continue
        names = list(class_names) if class_names is not None else [str(i) for i in range(value.numel())]
        if len(names) != value.numel():
            raise ValueError(
                f"`class_names` must have {value.numel()} entries for {key!r}, got {len(names)}."
            )
        for name, v in zip(names, value.reshape(-1), strict=True):
            flat[f"{key}{separator}{name}"] = v
    return flat
