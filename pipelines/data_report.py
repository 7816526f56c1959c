"""The data report: ``reports/<slug>/data.md``, ``data.json`` and a PNG grid of samples per class.

It reads the same cached arrays as training (decoding once if needed) and reports what a
competitor should know before training: counts per class and split, image sizes and modes,
blank (constant) images, exact duplicates within and across splits, and labels in val that
train lacks. Unlike training it does not stop at an unseen val label: it lists them.
"""
from __future__ import annotations

import hashlib
import os
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from competition import settings
from competition.config import Competition
from competition.fileio import write_json, write_text
from pipelines.data import CachedSplit, load_split_cached

SPLITS = ("train", "val", "test")
MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
CHUNK = 4096
LISTED = 100  # rows listed in data.md per finding; data.json holds them all


def data_report(competition: Competition, progress: bool = True, samples_per_class: int = 8,
                seed: int = settings.SEED) -> dict:
    """Write the report files for ``competition``; return the report as a dict (what data.json holds)."""
    splits = {name: load_split_cached(competition, name, labelled=name != "test", progress=progress)
              for name in SPLITS if name == "train" or competition.has_split(name)}
    out = settings.reports_dir(competition.slug)
    report = {
        "competition": competition.slug,
        "raw_dir": shown_path(competition.raw_dir),
        "settings": {"channels": competition.channels, "image_size": competition.image_size,
                     "validation_fraction": competition.validation_fraction},
        "splits": {name: _split_summary(s) for name, s in splits.items()},
        "missing_splits": [name for name in SPLITS if name not in splits],
    }
    train_labels = _labels(splits["train"])
    report["classes"] = sorted(set(train_labels), key=_natural)
    report["counts_per_class"] = {
        name: {str(k): v for k, v in sorted(Counter(_labels(s)).items(), key=lambda kv: _natural(kv[0]))}
        for name, s in splits.items() if s.labels is not None}
    report["blank_images"] = [row for name, s in splits.items() for row in _blank(name, s)]
    report["duplicates"] = _duplicates(splits)
    val_labels = set(_labels(splits["val"])) if "val" in splits else set()
    report["val_labels_not_in_train"] = sorted(val_labels - set(train_labels), key=_natural)
    report["train_labels_not_in_val"] = sorted(set(train_labels) - val_labels, key=_natural) if val_labels else []
    report["sample_grid"] = shown_path(sample_grid(splits["train"], out / "samples.png", samples_per_class, seed))
    report["cache"] = {name: shown_path(s.cache_dir) for name, s in splits.items()}
    write_json(out / "data.json", report)
    write_text(out / "data.md", markdown(report))
    return report


def shown_path(path: Path) -> str:
    """``path`` relative to the project home when inside it (a report should not show the machine's folders).

    Not resolved: a raw folder that is a link to elsewhere is still shown as ``data/raw/<slug>``.
    """
    try:
        return Path(os.path.abspath(path)).relative_to(settings.home()).as_posix()
    except ValueError:
        return str(path)


def _natural(value):
    return (0, value, "") if isinstance(value, (int, np.integer)) else (1, 0, str(value))


def _labels(split: CachedSplit) -> list:
    return split.labels.tolist() if split.labels is not None else []


def _split_summary(split: CachedSplit) -> dict:
    kinds = Counter()
    for h, w, c, bits in split.sources.tolist():
        mode = MODES.get(c, f"{c}ch") + ("" if bits == 8 else f" {bits}-bit")
        kinds[(f"{w}x{h}", mode)] += 1
    return {
        "images": len(split.ids),
        "array_shape": list(split.images.shape[1:]),
        "source": split.cache_dir.name,
        "sizes_and_modes": [{"size": size, "mode": mode, "count": n} for (size, mode), n in kinds.most_common()],
    }


def _blank(name: str, split: CachedSplit) -> list[dict]:
    """Images whose every pixel has one value (all black, all white, ...)."""
    rows = []
    for start in range(0, len(split.ids), CHUNK):
        flat = np.asarray(split.images[start:start + CHUNK]).reshape(-1, int(np.prod(split.images.shape[1:])))
        low, high = flat.min(axis=1), flat.max(axis=1)
        for i in np.flatnonzero(low == high):
            k = start + int(i)
            rows.append({"split": name, "id": split.ids[k], "value": int(low[i]),
                         "label": split.labels[k].item() if split.labels is not None else None})
    return rows


def _duplicates(splits: dict[str, CachedSplit]) -> list[dict]:
    """Groups of images with identical decoded pixels, within a split or across splits."""
    groups, blank = defaultdict(list), set()
    for name, split in splits.items():
        for start in range(0, len(split.ids), CHUNK):
            chunk = np.asarray(split.images[start:start + CHUNK])
            for i in range(len(chunk)):
                digest = hashlib.blake2b(chunk[i].tobytes(), digest_size=16).hexdigest()
                if chunk[i].min() == chunk[i].max():
                    blank.add(digest)
                k = start + i
                groups[digest].append({"split": name, "id": split.ids[k],
                                       "label": split.labels[k].item() if split.labels is not None else None})
    out = []
    for digest, members in groups.items():
        if len(members) < 2:
            continue
        labels = {m["label"] for m in members if m["label"] is not None}
        in_splits = sorted({m["split"] for m in members}, key=SPLITS.index)
        out.append({"hash": digest, "count": len(members), "splits": in_splits, "across_splits": len(in_splits) > 1,
                    "conflicting_labels": len(labels) > 1, "blank": digest in blank, "members": members})
    return sorted(out, key=lambda g: (-g["count"], g["hash"]))


def sample_grid(split: CachedSplit, path: Path, per_class: int = 8, seed: int = settings.SEED) -> Path:
    """One row per class of up to ``per_class`` random train images, drawn as a single mosaic."""
    from pipelines.plots import plt, save_figure

    labels = _labels(split)
    classes = sorted(set(labels), key=_natural)
    by_class = defaultdict(list)
    for i, value in enumerate(labels):
        by_class[value].append(i)
    rng = np.random.default_rng(seed)
    h, w, c = split.images.shape[1:]
    pad = 2
    mosaic = np.full((len(classes) * (h + pad), per_class * (w + pad), c), 255, np.uint8)
    for row, value in enumerate(classes):
        members = by_class[value]
        picks = sorted(rng.choice(members, size=min(per_class, len(members)), replace=False).tolist())
        for col, i in enumerate(picks):
            mosaic[row * (h + pad):row * (h + pad) + h, col * (w + pad):col * (w + pad) + w] = split.images[i]
    inch = max(0.3, w / 110)  # about one screen pixel per image pixel at the saved 110 dpi
    fig, ax = plt.subplots(figsize=(per_class * inch + 1.5, len(classes) * inch * h / w + 0.6))
    ax.imshow(mosaic[..., 0] if c == 1 else mosaic, cmap="gray" if c == 1 else None, interpolation="nearest")
    ax.set_yticks([row * (h + pad) + h / 2 for row in range(len(classes))])
    ax.set_yticklabels([f"{value} ({len(by_class[value])})" for value in classes], fontsize=7)
    ax.set_xticks([])
    ax.set_title("train samples per class (count in brackets)", fontsize=9)
    return save_figure(fig, path)


def markdown(report: dict) -> str:
    """The report as Markdown tables, the long lists cut to their first rows (data.json has all)."""
    lines = [f"# Data report: {report['competition']}", "", f"Raw files: `{report['raw_dir']}`; "
             f"channels {report['settings']['channels']}, image_size {report['settings']['image_size']}.", ""]
    if "val" in report["missing_splits"]:
        lines.append(f"No val split: training holds out a stratified {report['settings']['validation_fraction']:.0%} "
                     f"of train (fixed seed).")
    if "test" in report["missing_splits"]:
        lines.append("No test split: training works; `make predict` needs the competition's test files.")
    lines += ["", "## Splits", "", "| split | images | array shape | sizes and modes of the files |",
              "|---|---|---|---|"]
    for name, s in report["splits"].items():
        kinds = ", ".join(f"{k['size']} {k['mode']}: {k['count']}" for k in s["sizes_and_modes"])
        lines.append(f"| {name} | {s['images']} | {'x'.join(map(str, s['array_shape']))} | {kinds} |")
    counts = report["counts_per_class"]
    lines += ["", f"## Counts per class ({len(report['classes'])} classes in train)", "",
              "| class | " + " | ".join(counts) + " |", "|---" * (len(counts) + 1) + "|"]
    values = sorted({k for c in counts.values() for k in c},
                    key=lambda v: _natural(int(v)) if v.lstrip("-").isdigit() else _natural(v))
    for value in values:
        lines.append(f"| {value} | " + " | ".join(str(c.get(value, 0)) for c in counts.values()) + " |")
    train_counts = list(counts.get("train", {}).values())
    if train_counts:
        lines += ["", f"Train images per class: min {min(train_counts)}, max {max(train_counts)}, "
                      f"mean {np.mean(train_counts):.1f}."]
    blank = report["blank_images"]
    by_value = Counter(b["value"] for b in blank)
    lines += ["", f"## Blank (constant) images: {len(blank)}", ""]
    if blank:
        lines.append("By pixel value: " + ", ".join(f"{v}: {n}" for v, n in sorted(by_value.items())) +
                     f"; over {len({(b['split'], b['label']) for b in blank})} (split, class) pairs.")
        lines += ["", "| split | id | label | value |", "|---|---|---|---|"]
        lines += [f"| {b['split']} | {b['id']} | {b['label']} | {b['value']} |" for b in blank[:LISTED]]
    dups = report["duplicates"]
    extra = sum(g["count"] - 1 for g in dups)
    lines += ["", f"## Exact duplicates: {len(dups)} groups ({extra} redundant images)", ""]
    if dups:
        lines.append(f"Within one split: {sum(not g['across_splits'] for g in dups)} groups; across splits: "
                     f"{sum(g['across_splits'] for g in dups)}; with conflicting labels: "
                     f"{sum(g['conflicting_labels'] for g in dups)}; of blank images: {sum(g['blank'] for g in dups)}.")
        lines += ["", "| images | splits | labels | blank | ids |", "|---|---|---|---|---|"]
        for g in dups[:LISTED]:
            labels = sorted({m["label"] for m in g["members"] if m["label"] is not None}, key=_natural)
            ids = ", ".join(f"{m['split']}:{m['id']}" for m in g["members"][:4]) + (" ..." if g["count"] > 4 else "")
            lines.append(f"| {g['count']} | {', '.join(g['splits'])} | {', '.join(map(str, labels))} | "
                         f"{'yes' if g['blank'] else ''} | {ids} |")
    lines += ["", "## Labels", "",
              f"Labels in val not in train: {report['val_labels_not_in_train'] or 'none'}.",
              f"Labels in train not in val: {report['train_labels_not_in_val'] or 'none'}.",
              "", f"![samples]({Path(report['sample_grid']).name})", ""]
    if len(blank) > LISTED or len(dups) > LISTED:
        lines.append(f"(lists cut at {LISTED} rows; data.json has every row)")
    return "\n".join(lines) + "\n"
