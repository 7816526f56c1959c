"""Upload a submission with the real kaggle client's Python API, and list the competition's submissions."""
from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

from competition.errors import PipelineError
from competition.kaggle_client import explain_kaggle_error, kaggle_api, redact

# kaggle 2.x does not raise on a failed upload: competition_submit returns a response with this message
UPLOAD_FAILED = "Could not submit to competition"


@dataclass
class Submitted:
    """Kaggle's answer to an accepted upload."""

    message: str
    ref: int | None


def submit(path: Path, message: str, slug: str) -> Submitted:
    """Upload ``path`` to competition ``slug``; return Kaggle's answer. Never modifies the file.

    Raises a one-line PipelineError without credentials, without network, on an HTTP error or a refused upload.
    """
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path}: no such submission file")
    api = kaggle_api()
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):  # the client prints the upload's error itself, untidily
            result = api.competition_submit(file_name=str(path), message=message, competition=slug)
    except Exception as err:  # requests and kagglesdk raise many types: all mean the upload did not happen
        raise PipelineError(f"{path}: not submitted: {explain_kaggle_error(slug, err, 'upload')}; "
                            f"the file is unchanged") from None
    text = str(getattr(result, "message", "") or "")
    if UPLOAD_FAILED.lower() in text.lower() or not text:
        said = " ".join(printed.getvalue().split())
        detail = f" ({redact(said)[:200]})" if said else ""
        raise PipelineError(f"{path}: Kaggle refused the upload to {slug}: {text or 'no answer'}{detail}; "
                            f"the file is unchanged")
    return Submitted(message=redact(text), ref=getattr(result, "ref", None) or None)


def recent_submissions(slug: str, count: int = 5, api=None) -> list[dict]:
    """The competition's newest ``count`` submissions: date, file, description, status, public score."""
    api = api or kaggle_api()
    try:
        rows = api.competition_submissions(slug, page_size=count) or []
    except Exception as err:
        raise PipelineError(explain_kaggle_error(slug, err, "submission list")) from None
    out = []
    for row in rows[:count]:
        if row is None:
            continue
        status = getattr(row, "status", None)
        out.append({"ref": getattr(row, "ref", None), "date": str(getattr(row, "date", "") or "")[:19],
                    "file": getattr(row, "file_name", "") or "", "description": getattr(row, "description", "") or "",
                    "status": getattr(status, "name", str(status or "")).lower(),
                    "public_score": getattr(row, "public_score", "") or "",
                    "error": getattr(row, "error_description", "") or ""})
    return out


def remaining_today(slug: str, api=None) -> int | None:
    """Submissions still allowed today, or None when Kaggle does not say."""
    api = api or kaggle_api()
    try:
        return int(api.competition_get_submission_limits(slug).num_allowed_now)
    except Exception:  # a bonus line: never fail over it
        return None


def format_submissions(rows: list[dict]) -> list[str]:
    """Aligned text lines for ``recent_submissions``."""
    if not rows:
        return ["(no submissions yet)"]
    lines = [f"{'date':19}  {'status':8}  {'public':>8}  {'file':40}  description"]
    for r in rows:
        score = r["public_score"] or ("error" if r["status"] == "error" else "-")
        lines.append(f"{r['date']:19}  {r['status']:8}  {score:>8}  {r['file'][:40]:40}  {r['description']}"
                     + (f"  ({r['error']})" if r["error"] else ""))
    return lines
