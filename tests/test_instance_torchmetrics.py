"""MeanAveragePrecision against torchmetrics 1.9's own, option by option and input form by form.

The numbers are pycocotools' in both; torchmetrics returns them as float32, which
``compat="torchmetrics"`` reproduces (dtypes, keys and shapes equal, values to float32 rounding).
"""

from __future__ import annotations

import contextlib
import io

import pytest
import torch
from _coco_reference import coco_eval, random_scene
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


def _image(seed: int, num_dets: int, num_gts: int) -> tuple[dict, dict]:
    gen = torch.Generator().manual_seed(seed)

    def boxes(n: int) -> torch.Tensor:
        return torch.tensor([[2.0, 3.0, 14.0, 15.0]]).repeat(n, 1) + 4 * torch.rand(n, 4, generator=gen)

    def masks(n: int) -> torch.Tensor:
        return torch.rand(n, 20, 20, generator=gen) > 0.5

    pred = {"boxes": boxes(num_dets), "masks": masks(num_dets), "scores": torch.rand(num_dets, generator=gen)}
    pred["labels"] = torch.randint(0, 2, (num_dets,), generator=gen)
    target = {
        "boxes": boxes(num_gts),
        "masks": masks(num_gts),
        "labels": torch.randint(0, 2, (num_gts,), generator=gen),
    }
    return pred, target


EMPTY_CASES = {
    "no update": [],
    "one empty image": [(0, 0)],
    "detections only": [(2, 0)],
    "targets only": [(0, 2)],
    "no image with both": [(2, 0), (0, 2)],
    "detections on an image without targets": [(2, 2), (3, 0)],
    "targets on an image without detections": [(0, 2), (2, 2)],
}


@pytest.mark.parametrize("iou_type", ["bbox", "segm", ("bbox", "segm")])
@pytest.mark.parametrize("case", list(EMPTY_CASES))
@pytest.mark.parametrize("kwargs", [{}, {"class_metrics": True}, {"extended_summary": True}], ids=str)
def test_empty_images_give_torchmetrics_results(iou_type, case, kwargs) -> None:
    # torchmetrics' segm-only COCO dataset leaves out every image without target masks (its
    # detections are not false positives) and answers -1 without the per-class and extended keys
    # when either side holds no image; ours follows under compat="torchmetrics"
    images = [_image(10 * i + d, d, g) for i, (d, g) in enumerate(EMPTY_CASES[case])]
    batches = [([p for p, _ in images], [t for _, t in images])] if images else []
    kwargs = {"iou_type": iou_type, **kwargs}
    _compare(_ours(batches, **kwargs, compat="torchmetrics"), torchmetrics_map(batches, **kwargs), True)


@pytest.mark.parametrize("max_dets", [None, [1, 10, 1000], [1, 5, 20]])
@pytest.mark.parametrize("class_metrics", [False, True])
def test_faster_coco_eval_backend_gives_its_numbers(max_dets, class_metrics) -> None:
    # faster-coco-eval: precision without eps, and AP (stat 0) at the largest maxDets where
    # pycocotools looks up 100 (so -1 without it); torchmetrics' backend argument picks either
    batches = _scene(11)
    for backend in ("pycocotools", "faster_coco_eval"):
        kwargs = {"iou_type": "segm", "backend": backend, "max_detection_thresholds": max_dets}
        kwargs["class_metrics"] = class_metrics
        _compare(_ours(batches, **kwargs, compat="torchmetrics"), torchmetrics_map(batches, **kwargs), True)


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_torchmetrics_float32_thresholds_under_compat(iou_type) -> None:
    # tied scores and small counts put recalls on the recall thresholds, where torchmetrics'
    # float32 torch.linspace values (0.2 -> 0.20000000298...) and numpy's float64 ones differ
    preds, target = random_scene(torch.Generator().manual_seed(11), num_images=5, with_boxes=True)
    batch = [([preds[1], preds[3]], [target[1], target[3]])]
    theirs = torchmetrics_map(batch, iou_type=iou_type)
    reference = coco_eval(*batch[0], iou_type=iou_type).stats
    default = _ours(batch, iou_type=iou_type)
    assert default["map"].item() == reference[0]  # exact pycocotools by default
    assert abs(theirs["map"].item() - reference[0]) > 1e-4  # the case tells the two apart
    _compare(_ours(batch, iou_type=iou_type, compat="torchmetrics"), theirs, True)


@pytest.mark.parametrize("iou_type", ["bbox", "segm", ("bbox", "segm")])
def test_tm_to_coco_writes_files_pycocotools_scores_as_the_metric(iou_type, tmp_path) -> None:
    # torchmetrics' tm_to_coco (with keep_inputs=True): the written files, evaluated by
    # pycocotools itself, give the metric's numbers; read back by coco_to_tm, the inputs themselves
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    batches = _scene(21)
    metric = MeanAveragePrecision(iou_type=iou_type, keep_inputs=True)
    for preds, target in batches:
        metric.update(preds, target)
    result = metric.compute()
    metric.tm_to_coco(str(tmp_path / "run"))
    types = (iou_type,) if isinstance(iou_type, str) else iou_type
    for t in types:
        with contextlib.redirect_stdout(io.StringIO()):
            gt = COCO(str(tmp_path / "run_target.json"))
            ev = COCOeval(gt, gt.loadRes(str(tmp_path / "run_preds.json")), t)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        prefix = f"{t}_" if len(types) > 1 else ""
        assert result[prefix + "map"].item() == pytest.approx(ev.stats[0], abs=1e-12)
        assert result[prefix + "mar_100"].item() == pytest.approx(ev.stats[8], abs=1e-12)
    back_preds, back_target = MeanAveragePrecision.coco_to_tm(
        str(tmp_path / "run_preds.json"), str(tmp_path / "run_target.json"), iou_type=types
    )
    originals = [(p, t) for preds, target in batches for p, t in zip(preds, target, strict=True)]
    assert len(back_preds) == len(originals)
    for (p, t), p2, t2 in zip(originals, back_preds, back_target, strict=True):
        assert torch.equal(p["labels"].long(), p2["labels"].long())
        assert torch.equal(t["labels"].long(), t2["labels"].long())
        if "segm" in types:
            assert torch.equal(p["masks"].bool(), p2["masks"].bool())
        if "bbox" in types:  # xywh written, xyxy given
            torch.testing.assert_close(box_convert(p["boxes"].double(), "xyxy", "xywh"), p2["boxes"].double())
    metric.reset()
    assert metric._kept == []
    with pytest.raises(ValueError, match="`keep_inputs` must be True at construction"):
        MeanAveragePrecision().tm_to_coco(str(tmp_path / "none"))
