"""The local submission files, newest first, with the validation scores their sidecars record."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

from competition import settings
from submissions.sidecar import try_read_sidecar


def list_submissions(slug: str | None = None) -> list[dict]:
    """Every ``submissions/*.csv`` (of ``slug`` when given), newest first: file, competition, run, scores, uploads."""
    folder = settings.submissions_dir()
    out = []
    for path in folder.glob("*.csv") if folder.exists() else []:
        if path.name.startswith("."):  # a temporary file being written
            continue
        info = try_read_sidecar(path)
        if slug is not None and info.get("competition") not in (slug, None):
            continue
        scores = info.get("scores") or {}
        val = scores.get("val_accuracy", info.get("val_accuracy"))
        out.append({"path": path, "mtime": path.stat().st_mtime, "competition": info.get("competition", "?"),
                    "run": info.get("run", ""), "model": info.get("model") or "", "val_accuracy": val,
                    "val_macro_f1": scores.get("val_macro_f1"), "uploads": len(info.get("uploads", []))})
    return sorted(out, key=lambda r: (r["mtime"], r["path"].name), reverse=True)


def format_listing(rows: list[dict]) -> list[str]:
    """Aligned text lines for ``list_submissions``."""
    if not rows:
        return [f"no submission files in {settings.submissions_dir()}; run `make predict` first"]

    def score(value):
        return f"{value:.4f}" if isinstance(value, (int, float)) else "-"

    lines = [f"{'written':16}  {'competition':20}  {'val_acc':>7}  {'val_f1':>7}  {'model':10}  {'sent':>4}  file"]
    for r in rows:
        when = datetime.fromtimestamp(r["mtime"]).strftime("%Y-%m-%d %H:%M")
        lines.append(f"{when:16}  {r['competition'][:20]:20}  {score(r['val_accuracy']):>7}  "
                     f"{score(r['val_macro_f1']):>7}  {r['model'][:10]:10}  {r['uploads']:>4}  {_relative(r['path'])}")
    return lines


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(settings.home()))
    except ValueError:
        return str(path)
