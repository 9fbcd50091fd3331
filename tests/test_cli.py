"""The ``torchseg-metrics`` command line on the real data, against pycocotools, panopticapi and NumPy.

One run goes through a subprocess (the console entry point as users call it); the others call
``main([...])`` in-process to keep the suite fast.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from torchseg_metrics.cli import main

ROOT = Path(__file__).resolve().parents[1]
KEYS = ["map", "map_50", "map_75", "map_small", "map_medium", "map_large"]
KEYS += ["mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large"]


def _cocoeval(gt_file: Path, results: str | list, iou_type: str) -> COCOeval:
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_file))
        ev = COCOeval(gt, gt.loadRes(results), iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def _per_class_ap(ev: COCOeval) -> dict[int, float]:
    """AP per category as torchmetrics derives it: mean of precision[:, :, k, all, maxDets[-1]] > -1."""
    out = {}
    for k, cat in enumerate(ev.params.catIds):
        p = ev.eval["precision"][:, :, k, 0, -1]
        out[cat] = float(p[p > -1].mean()) if (p > -1).any() else -1.0
    return out


def _check_coco(result: dict, ev: COCOeval) -> None:
    np.testing.assert_allclose([result[k] for k in KEYS], ev.stats, rtol=0, atol=1e-12)
    np.testing.assert_allclose(result["stats"], ev.stats, rtol=0, atol=1e-12)


@pytest.mark.slow
def test_coco_segm_subprocess_equals_pycocotools(real_data, tmp_path: Path) -> None:
    folder = real_data / "coco_val2014_100"
    gt, res = folder / "instances_val2014_100.json", folder / "instances_val2014_fakesegm100_results.json"
    out = tmp_path / "segm.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    cmd = [
        sys.executable,
        "-m",
        "torchseg_metrics",
        "coco",
        str(gt),
        str(res),
        "--per-class",
        "--json",
        str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    ev = _cocoeval(gt, str(res), "segm")
    result = json.loads(out.read_text())
    _check_coco(result, ev)
    # SOURCES.md's published AP for this file pair, as a sanity check of the reference itself
    assert abs(result["map"] - 0.3195452759) < 1e-10
    ap = _per_class_ap(ev)
    got = dict(zip(result["classes"], result["map_per_class"], strict=True))
    assert set(got) <= set(ap) and len(got) >= 70
    np.testing.assert_allclose([got[c] for c in got], [ap[c] for c in got], rtol=0, atol=1e-12)
    names = {c["id"]: c["name"] for c in json.loads(gt.read_text())["categories"]}
    assert result["class_names"] == [names[c] for c in result["classes"]]
    assert " Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.320" in proc.stdout


def test_coco_bbox_and_shapes_in_process(real_data, tmp_path: Path) -> None:
    folder = real_data / "coco_val2014_100"
    gt, res = folder / "instances_val2014_100.json", folder / "instances_val2014_fakebbox100_results.json"
    out = tmp_path / "bbox.json"
    assert (
        main(["coco", str(gt), str(res), "--iou-type", "bbox", "--json", str(out), "--batch-size", "32"]) == 0
    )
    _check_coco(json.loads(out.read_text()), _cocoeval(gt, str(res), "bbox"))
    # faster_coco_eval_shapes: polygon detections; the reference turns them into RLE without bbox
    # (SOURCES.md), which is the detection-area rule --dt-area mask
    shapes = real_data / "faster_coco_eval_shapes"
    dets = json.loads((shapes / "dt_dataset.json").read_text())
    converted = copy.deepcopy(dets)
    for d in converted:
        d["segmentation"] = mask_utils.merge(mask_utils.frPyObjects(d["segmentation"], 256, 256))
        del d["bbox"]
    ev = _cocoeval(shapes / "gt_dataset.json", converted, "segm")
    out = tmp_path / "shapes.json"
    args = ["coco", str(shapes / "gt_dataset.json"), str(shapes / "dt_dataset.json"), "--dt-area", "mask"]
    assert main([*args, "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    _check_coco(result, ev)
    assert abs(result["map"] - 0.6947194719) < 1e-10 and abs(result["map_medium"] - 0.7367986799) < 1e-10


def test_coco_boundary_equals_faster_coco_eval(real_data, tmp_path: Path) -> None:
    import faster_coco_eval

    shapes = real_data / "faster_coco_eval_shapes"
    dets = json.loads((shapes / "dt_dataset.json").read_text())
    for d in dets:  # as above: RLE detections without bbox (their area is the mask's)
        d["segmentation"] = mask_utils.merge(mask_utils.frPyObjects(d["segmentation"], 256, 256))
        del d["bbox"]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = faster_coco_eval.COCO(str(shapes / "gt_dataset.json"))
        ev = faster_coco_eval.COCOeval_faster(gt, gt.loadRes(dets), iouType="boundary", boundary_cpu_count=1)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    out = tmp_path / "boundary.json"
    args = ["coco", str(shapes / "gt_dataset.json"), str(shapes / "dt_dataset.json"), "--dt-area", "mask"]
    assert main([*args, "--iou-type", "boundary", "--json", str(out)]) == 0
    np.testing.assert_allclose(json.loads(out.read_text())["stats"], ev.stats[:12], rtol=0, atol=1e-12)


def test_coco_loadres_box_area_quirk_equals_pycocotools(real_data, tmp_path: Path) -> None:
    """Polygon results that carry a bbox: pycocotools' loadRes takes every detection's area from its
    box (spec A.2 quirk); the default --dt-area loadres reproduces it."""
    shapes = real_data / "faster_coco_eval_shapes"
    gt, dt = shapes / "gt_dataset.json", shapes / "dt_dataset.json"
    ev = _cocoeval(gt, json.loads(dt.read_text()), "segm")
    out = tmp_path / "loadres.json"
    assert main(["coco", str(gt), str(dt), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    _check_coco(result, ev)
    assert result["map_medium"] != pytest.approx(0.7367986799, abs=1e-6)  # differs from the mask-area rule


def _perturbed_prediction(real_data, tmp_path: Path) -> tuple[Path, Path]:
    """spec G's recipe: erase the first non-crowd thing segment of each image, roll +3 columns."""
    folder = real_data / "panopticapi_sample"
    data = json.loads((folder / "panoptic_examples.json").read_text())
    things = {c["id"] for c in data["categories"] if c["isthing"]}
    pred_dir = tmp_path / "pred"
    pred_dir.mkdir()
    anns = []
    for ann in data["annotations"]:
        rgb = np.asarray(Image.open(folder / "panoptic_examples" / ann["file_name"])).astype(np.int64)
        ids = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
        first = next(s["id"] for s in ann["segments_info"] if s["category_id"] in things and not s["iscrowd"])
        ids[ids == first] = 0
        ids = np.roll(ids, 3, axis=1)
        ids[:, :3] = 0
        rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1).astype(np.uint8)
        Image.fromarray(rgb).save(pred_dir / ann["file_name"])
        present = set(np.unique(ids).tolist())
        anns.append({**ann, "segments_info": [s for s in ann["segments_info"] if s["id"] in present]})
    pred_json = tmp_path / "pred.json"
    pred_json.write_text(json.dumps({**data, "annotations": anns}))
    return pred_json, pred_dir


def test_panoptic_equals_panopticapi(real_data, tmp_path: Path) -> None:
    from panopticapi.evaluation import pq_compute

    folder = real_data / "panopticapi_sample"
    gt_json, gt_dir = folder / "panoptic_examples.json", folder / "panoptic_examples"
    out = tmp_path / "self.json"
    assert main(["panoptic", str(gt_json), str(gt_dir), str(gt_json), str(gt_dir), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    for group, n in (("All", 8), ("Things", 4), ("Stuff", 4)):  # SOURCES.md: GT vs GT
        assert result[group] == {"pq": 1.0, "sq": 1.0, "rq": 1.0, "n": n}
    pred_json, pred_dir = _perturbed_prediction(real_data, tmp_path)
    out = tmp_path / "pert.json"
    args = [
        "panoptic",
        str(gt_json),
        str(gt_dir),
        str(pred_json),
        str(pred_dir),
        "--per-class",
        "--batch-size",
        "1",
    ]
    assert main([*args, "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    with contextlib.redirect_stdout(io.StringIO()):
        ref = pq_compute(str(gt_json), str(pred_json), str(gt_dir), str(pred_dir))
    for group in ("All", "Things", "Stuff"):
        assert result[group]["n"] == ref[group]["n"]
        for key in ("pq", "sq", "rq"):
            assert abs(result[group][key] - ref[group][key]) < 1e-12
    assert abs(result["All"]["pq"] - 0.780473) < 1e-6  # the spec's published value (section G)
    # boundary PQ (--boundary): 1 for GT against itself, below PQ for the shifted prediction
    out_b = tmp_path / "boundary.json"
    assert main([*args, "--boundary", "--json", str(out_b)]) == 0
    boundary = json.loads(out_b.read_text())
    assert boundary["All"]["n"] == result["All"]["n"] and boundary["All"]["pq"] < result["All"]["pq"]
    out_self = tmp_path / "boundary_self.json"
    self_args = ["panoptic", str(gt_json), str(gt_dir), str(gt_json), str(gt_dir), "--boundary", "0.05"]
    assert main([*self_args, "--json", str(out_self)]) == 0
    assert json.loads(out_self.read_text())["All"]["pq"] == 1.0
    for cat, stats in ref["per_class"].items():
        ours = result["per_class"][str(cat)]
        if ours["tp"] + ours["fp"] + ours["fn"] > 0:
            assert abs(ours["pq"] - stats["pq"]) < 1e-12 and abs(ours["sq"] - stats["sq"]) < 1e-12


def _label_maps(real_data, tmp_path: Path) -> tuple[Path, Path]:
    """Category per pixel (VOID -> 255) of the panoptic sample, and of its perturbed prediction."""
    folder = real_data / "panopticapi_sample"
    data = json.loads((folder / "panoptic_examples.json").read_text())
    pred_json, pred_dir = _perturbed_prediction(real_data, tmp_path)
    preds = {a["file_name"]: a for a in json.loads(pred_json.read_text())["annotations"]}
    gt_out, pred_out = tmp_path / "gt_maps", tmp_path / "pred_maps"
    gt_out.mkdir(), pred_out.mkdir()
    for ann in data["annotations"]:
        for src, anno, dst in (
            (folder / "panoptic_examples", ann, gt_out),
            (pred_dir, preds[ann["file_name"]], pred_out),
        ):
            rgb = np.asarray(Image.open(src / ann["file_name"])).astype(np.int64)
            ids = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
            cat = np.full(ids.shape, 255, np.uint8)
            for s in anno["segments_info"]:
                cat[ids == s["id"]] = s["category_id"]
            Image.fromarray(cat).save(dst / ann["file_name"])
    return gt_out, pred_out


def _numpy_semantic(gt_dir: Path, pred_dir: Path, c: int, ignore: int) -> dict:
    cm = np.zeros((c, c), np.int64)
    missed = np.zeros(c, np.int64)
    for f in sorted(gt_dir.iterdir()):
        t = np.asarray(Image.open(f)).astype(np.int64).ravel()
        p = np.asarray(Image.open(pred_dir / f.name)).astype(np.int64).ravel()
        keep = t != ignore
        t, p = t[keep], p[keep]
        ok = p < c
        cm += np.bincount(t[ok] * c + p[ok], minlength=c * c).reshape(c, c)
        missed += np.bincount(t[~ok], minlength=c)  # predicted 255 on a valid pixel: a miss
    tp, rows, cols = np.diag(cm).astype(float), cm.sum(1) + missed, cm.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(rows + cols > 0, tp / (rows + cols - tp), np.nan)
        dice = np.where(rows + cols > 0, 2 * tp / (rows + cols), np.nan)
        acc = np.where(rows > 0, tp / rows, np.nan)
    present = rows > 0
    return {
        "mIoU": np.nanmean(iou),
        "mDice": np.nanmean(dice),
        "aAcc": tp.sum() / rows.sum(),
        "mAcc": np.nanmean(acc),
        "fwIoU": float((rows[present] / rows.sum() * iou[present]).sum()),
        "IoU": iou,
    }


def test_semantic_equals_numpy(real_data, tmp_path: Path) -> None:
    gt_dir, pred_dir = _label_maps(real_data, tmp_path)
    names = tmp_path / "names.txt"
    names.write_text("\n".join(f"class{i}" for i in range(201)))
    out = tmp_path / "sem.json"
    args = ["semantic", str(gt_dir), str(pred_dir), "--num-classes", "201", "--ignore-index", "255"]
    assert main([*args, "--class-names", str(names), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    ref = _numpy_semantic(gt_dir, pred_dir, 201, 255)
    for key in ("mIoU", "mDice", "aAcc", "mAcc", "fwIoU"):
        assert abs(result[key] - ref[key]) < 1e-12, key
    got = np.array([np.nan if v is None else v for v in result["IoU"]])
    np.testing.assert_allclose(got, ref["IoU"], rtol=0, atol=1e-12)  # NaN (null in JSON) where undefined
    assert result["class_names"][7] == "class7" and 0.5 < result["mIoU"] < 1.0


def _coco_files(tmp_path: Path, real_data) -> tuple[Path, Path]:
    gt = {
        "images": [{"id": 1, "height": 4, "width": 5}],
        "categories": [{"id": 3, "name": "cat"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "iscrowd": 0, "area": 4.0,
                         "bbox": [0, 0, 2, 2], "segmentation": [[0, 0, 2, 0, 2, 2, 0, 2]]}],
    }  # fmt: skip
    res = [
        {
            "image_id": 1,
            "category_id": 3,
            "score": 0.5,
            "segmentation": {"size": [4, 5], "counts": [0, 2, 18]},
        }
    ]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "res.json").write_text(json.dumps(res))
    return tmp_path / "gt.json", tmp_path / "res.json"


def _edit(path: Path, fn, tag: str) -> Path:
    data = json.loads(path.read_text())
    fn(data)
    out = path.with_name(f"{tag}_{path.name}")
    out.write_text(json.dumps(data))
    return out


def _copy_json(path: Path, tmp_path: Path) -> Path:
    out = tmp_path / path.name
    out.write_text(path.read_text())
    return out


def test_user_errors_exit_2_with_one_line(real_data, tmp_path: Path, capsys) -> None:
    gt, res = _coco_files(tmp_path, real_data)
    assert main(["coco", str(gt), str(res)]) == 0
    capsys.readouterr()
    (tmp_path / "cut.json").write_text(gt.read_text()[:100])
    pan = real_data / "panopticapi_sample"
    pan_gt, pan_dir = pan / "panoptic_examples.json", pan / "panoptic_examples"
    dup_images = _edit(gt, lambda d: d["images"].append(d["images"][0]), "dup")
    wrong_size = _edit(res, lambda d: d[0]["segmentation"].update(size=[5, 5], counts=[25]), "size")
    unknown_cat = _edit(res, lambda d: d[0].update(category_id=99), "cat")
    missing_png_id = _edit(
        _copy_json(pan_gt, tmp_path), lambda d: d["annotations"][0]["segments_info"].pop(0), "png"
    )
    gt_maps, pred_maps = tmp_path / "g", tmp_path / "p"
    gt_maps.mkdir(), pred_maps.mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(gt_maps / "a.png")
    Image.fromarray(np.zeros((4, 5), np.uint8)).save(pred_maps / "a.png")
    cases = [
        (["coco", str(tmp_path / "cut.json"), str(res)], "must be a valid JSON file"),
        (["coco", str(tmp_path / "none.json"), str(res)], "must be an existing JSON file"),
        (["coco", str(dup_images), str(res)], "unique ids"),
        (["coco", str(gt), str(wrong_size)], "must be the image size [4, 5]"),
        (["coco", str(gt), str(unknown_cat)], "must be a category id of the ground truth, got 99"),
        (
            ["panoptic", str(pan_gt), str(pan_dir), str(missing_png_id), str(pan_dir)],
            "PNG segment ids listed in the JSON",
        ),
        (
            ["panoptic", str(pan_gt), str(tmp_path / "nodir"), str(pan_gt), str(pan_dir)],
            "`gt_dir` must be an existing folder",
        ),
        (
            ["semantic", str(gt_maps), str(pred_maps), "--num-classes", "3"],
            "must be a label map of the ground truth's size",
        ),
        (
            ["semantic", str(gt_maps), str(gt_maps), "--num-classes", "3", "--class-names", str(res)],
            "must hold 3 names",
        ),
        (["coco", str(gt), str(res), "--device", "cuda:7" if not _cuda() else "tpu"], "`--device` must be"),
        (["coco", str(gt), str(res), "--json", str(tmp_path / "no" / "out.json")], "`--json` must be a file"),
        (
            ["semantic", str(gt_maps), str(pred_maps), "--num-classes", "0"],
            "must be an integer >= 1",
        ),  # argparse
        (["coco", str(gt)], "the following arguments are required"),  # argparse
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err, (argv, err)
        assert "Traceback" not in err
        lines = err.strip().splitlines()
        assert lines[-1].startswith("torchseg-metrics") and ": error: " in lines[-1]
        assert len(lines) == 1 or lines[0].startswith("usage:")  # ours: one line; argparse: usage + one


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def test_progress_bar_and_markdown(real_data, tmp_path: Path, capsys) -> None:
    gt, res = _coco_files(tmp_path, real_data)
    assert main(["coco", str(gt), str(res), "--progress", "always", "--markdown", "--per-class"]) == 0
    captured = capsys.readouterr()
    assert "coco [##############################] 1/1 images" in captured.err
    assert "| metric | IoU | area | maxDets | value |" in captured.out
    assert "| 3 cat |" in captured.out


def test_entry_points_are_declared() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    assert 'torchseg-metrics = "torchseg_metrics.cli:main"' in text
    assert (ROOT / "torchseg_metrics" / "__main__.py").is_file()


@pytest.mark.parametrize("argv", [["--help"], ["coco", "--help"]])
def test_help_exits_0(argv: list, capsys) -> None:
    assert main(argv) == 0
    assert "usage: torchseg-metrics" in capsys.readouterr().out


def test_plots_written(real_data, tmp_path: Path, capsys) -> None:
    pytest.importorskip("matplotlib")
    gt, res = _coco_files(tmp_path, real_data)
    plots = tmp_path / "plots"
    plots.mkdir()
    assert main(["coco", str(gt), str(res), "--per-class", "--plots", str(plots)]) == 0
    pan = real_data / "panopticapi_sample"
    pan_args = [str(pan / "panoptic_examples.json"), str(pan / "panoptic_examples")] * 2
    assert main(["panoptic", *pan_args, "--plots", str(plots)]) == 0
    g, p = tmp_path / "g", tmp_path / "p"
    g.mkdir(), p.mkdir()
    Image.fromarray(np.array([[0, 1, 2], [2, 2, 255]], np.uint8)).save(g / "a.png")
    Image.fromarray(np.array([[0, 1, 1], [2, 0, 0]], np.uint8)).save(p / "a.png")
    assert (
        main(
            ["semantic", str(g), str(p), "--num-classes", "3", "--ignore-index", "255", "--plots", str(plots)]
        )
        == 0
    )
    written = sorted(f.name for f in plots.iterdir())
    assert written == [
        "coco_segm_ap.png",
        "coco_segm_pr_curves.png",
        "panoptic_pq.png",
        "semantic_confusion.png",
        "semantic_iou.png",
    ]
    assert all(
        (plots / f).read_bytes()[:4] == b"\x89PNG" and (plots / f).stat().st_size > 1000 for f in written
    )
    assert "wrote" in capsys.readouterr().err
    assert main(["coco", str(gt), str(res), "--plots", str(tmp_path / "missing")]) == 2


def test_medical_volumes_and_semantic_boundary(tmp_path: Path) -> None:
    from torchseg_metrics import BoundaryIoU, HausdorffDistance, SurfaceDice

    rng = np.random.default_rng(5)
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gt_dir.mkdir()
    pred_dir.mkdir()
    volumes = []
    for i, shape in enumerate([(6, 14, 16), (8, 12, 10)]):  # volumes of different sizes
        t = np.zeros(shape, np.uint8)
        t[1:5, 2:10, 3:9] = 1
        t[2:4, 3:6, 4:7] = 2
        p = np.roll(t, int(rng.integers(0, 3)), axis=2)
        np.save(gt_dir / f"case{i}.npy", t)
        np.save(pred_dir / f"case{i}.npy", p)
        volumes.append(
            (torch.from_numpy(p.astype(np.int64))[None], torch.from_numpy(t.astype(np.int64))[None])
        )
    out = tmp_path / "medical.json"
    argv = ["medical", str(gt_dir), str(pred_dir), "--num-classes", "3", "--spacing", "2", "1", "1"]
    assert main([*argv, "--json", str(out), "--per-class"]) == 0
    result = json.loads(out.read_text())
    hd = HausdorffDistance(3, percentile=95, spacing=(2.0, 1.0, 1.0), per_class=True)
    nsd = SurfaceDice(3, tolerance=1.0, spacing=(2.0, 1.0, 1.0), per_class=True)
    for p, t in volumes:
        hd.update(p, t)
        nsd.update(p, t)
    assert result["per_class"]["HD"] == hd.compute().tolist()
    assert result["per_class"]["NSD"] == nsd.compute().tolist()
    assert result["volumes"] == 2
    # a 2-D folder through `semantic --boundary`: the BoundaryIoU of the same maps
    (tmp_path / "g2").mkdir()
    (tmp_path / "p2").mkdir()
    t2 = (rng.random((32, 40)) < 0.5).astype(np.uint8)
    p2 = np.roll(t2, 1, axis=1)
    Image.fromarray(t2).save(tmp_path / "g2" / "a.png")
    Image.fromarray(p2).save(tmp_path / "p2" / "a.png")
    out2 = tmp_path / "semantic.json"
    sem = ["semantic", str(tmp_path / "g2"), str(tmp_path / "p2"), "--num-classes", "2", "--boundary"]
    assert main([*sem, "--json", str(out2)]) == 0
    expected = BoundaryIoU(2, per_class=True)
    maps = [torch.from_numpy(x.astype(np.int64))[None] for x in (p2, t2)]
    expected.update(*maps)
    assert json.loads(out2.read_text())["BoundaryIoU"] == expected.compute().tolist()
    assert main(["medical", str(gt_dir), str(tmp_path / "missing"), "--num-classes", "3"]) == 2
