"""MeanAveragePrecision against torchmetrics 1.9's own, option by option and input form by form.

The numbers are pycocotools' in both; torchmetrics returns them as float32, which
``compat="torchmetrics"`` reproduces (dtypes, keys and shapes equal, values to float32 rounding).
"""

from __future__ import annotations

import contextlib
import io

import pytest
import torch
from _coco_reference import random_scene
from _torchmetrics_map import box_convert, torchmetrics_map

from torchseg_metrics.instance import MeanAveragePrecision


def _scene(seed: int, num_images: int = 5):
    preds, target = random_scene(torch.Generator().manual_seed(seed), num_images=num_images, with_boxes=True)
    return [(preds[:2], target[:2]), (preds[2:], target[2:])]


def _ours(batches, **kwargs):
    metric = MeanAveragePrecision(**kwargs)
    for preds, target in batches:
        metric.update(preds, target)
    return metric.compute()


def _compare(ours: dict, ref: dict, same_dtype: bool) -> None:
    assert ours.keys() == ref.keys()
    for key, expected in ref.items():
        got = ours[key]
        if key.endswith("ious"):  # {(image, class): (D, G) tensor or [] for an empty cell}
            assert got.keys() == expected.keys()
            for cell, block in expected.items():
                if isinstance(block, list):
                    assert got[cell] == block == []
                else:
                    assert not same_dtype or got[cell].dtype == block.dtype
                    torch.testing.assert_close(got[cell].float(), block.float(), rtol=0, atol=1e-6)
            continue
        assert got.shape == expected.shape, key
        assert got.dtype == expected.dtype if same_dtype else got.dtype in (expected.dtype, torch.float64), (
            key
        )
        torch.testing.assert_close(got.double(), expected.double(), rtol=2e-7, atol=1e-7, msg=key)


CONFIGS = [
    {"iou_type": "segm", "class_metrics": True, "extended_summary": True},
    {"iou_type": "bbox", "class_metrics": True},
    {"iou_type": ("bbox", "segm"), "class_metrics": True},
    {"iou_type": "segm", "average": "micro", "class_metrics": True, "extended_summary": True},
    {
        "iou_type": "bbox",
        "iou_thresholds": [0.5, 0.75],
        "rec_thresholds": torch.linspace(0, 1, 11).tolist(),
        "max_detection_thresholds": [1, 5, 20],
    },
]


@pytest.mark.parametrize("kwargs", CONFIGS)
@pytest.mark.parametrize("compat", ["pycocotools", "torchmetrics"])
def test_options_equal_torchmetrics(kwargs, compat) -> None:
    batches = _scene(50)
    _compare(
        _ours(batches, compat=compat, **kwargs), torchmetrics_map(batches, **kwargs), compat == "torchmetrics"
    )


@pytest.mark.parametrize("box_format", ["xyxy", "xywh", "cxcywh"])
def test_box_formats_equal_torchmetrics(box_format) -> None:
    def convert(scene: list) -> list:
        return [{**d, "boxes": box_convert(d["boxes"], "xyxy", box_format)} for d in scene]

    batches = [(convert(p), convert(t)) for p, t in _scene(51)]
    kw = {"iou_type": "bbox", "box_format": box_format, "class_metrics": True}
    _compare(_ours(batches, compat="torchmetrics", **kw), torchmetrics_map(batches, **kw), True)


def test_input_forms_torchmetrics_accepts_give_its_numbers() -> None:
    # integer boxes, uint8 masks, an empty image as tensor([]), given areas and crowd flags
    (p1, t1), (p2, t2) = _scene(52, num_images=4)
    forms = []
    for preds, target in ((p1, t1), (p2, t2)):
        preds = [
            {**d, "boxes": d["boxes"].round().long(), "masks": d["masks"].to(torch.uint8)} for d in preds
        ]
        target = [
            {**d, "boxes": d["boxes"].round().long(), "masks": d["masks"].to(torch.uint8)} for d in target
        ]
        forms.append((preds, target))
    none = torch.zeros(0, dtype=torch.long)
    forms[1][0][0] = {
        "boxes": torch.tensor([]),
        "masks": torch.tensor([]),
        "scores": torch.tensor([]),
        "labels": none,
    }
    target0 = forms[0][1][0]
    target0["area"] = torch.full((target0["labels"].shape[0],), 300.0)
    for iou_type in ("bbox", "segm"):
        kw = {"iou_type": iou_type, "class_metrics": True}
        if iou_type == "segm":  # an empty mask image without its size is ambiguous to pycocotools' RLE
            forms[1][0][0]["masks"] = torch.zeros(0, *forms[0][0][0]["masks"].shape[1:], dtype=torch.uint8)
        _compare(_ours(forms, compat="torchmetrics", **kw), torchmetrics_map(forms, **kw), True)


@pytest.mark.parametrize("iou_type", ["bbox", "segm", ("bbox", "segm")])
def test_coco_to_tm_equals_torchmetrics(real_data, iou_type) -> None:
    # the COCO val2014-100 files as torchmetrics' input lists, then the same numbers from both
    from _torchmetrics_map import _torchvision

    folder = real_data / "coco_val2014_100"
    kind = "bbox" if iou_type == "bbox" else "segm"
    files = (
        str(folder / f"instances_val2014_fake{kind}100_results.json"),
        str(folder / "instances_val2014_100.json"),
    )
    preds, target = MeanAveragePrecision.coco_to_tm(*files, iou_type=iou_type)
    with _torchvision() as mean_ap, contextlib.redirect_stdout(io.StringIO()):
        ref_preds, ref_target = mean_ap.MeanAveragePrecision().coco_to_tm(*files, iou_type=iou_type)
    assert len(preds) == len(ref_preds) == len(target) == len(ref_target)
    for ours, ref in zip([*preds, *target], [*ref_preds, *ref_target], strict=True):
        assert ours.keys() == ref.keys()
        for key in ref:
            assert ours[key].dtype == ref[key].dtype and torch.equal(ours[key], ref[key]), key
    if iou_type == "bbox":  # pycocotools' published stats, up to the lists' float32 boxes (SOURCES.md)
        metric = MeanAveragePrecision(iou_type="bbox", box_format="xywh")
        metric.update(preds, target)
        assert metric.compute()["map"].item() == pytest.approx(0.5045806987, abs=5e-5)
