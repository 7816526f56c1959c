"""Upload a submission with the real kaggle client's Python API."""
from __future__ import annotations

from pathlib import Path

from competition.download import kaggle_api
from competition.errors import PipelineError, first_line


def submit(path: Path, message: str, slug: str) -> str:
    """Upload ``path`` to competition ``slug``; return Kaggle's message. Never modifies the file."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path}: no such submission file")
    api = kaggle_api()
    try:
        result = api.competition_submit(file_name=str(path), message=message, competition=slug)
    except Exception as err:  # network errors, HTTP errors: all mean the upload did not happen
        raise PipelineError(f"{path}: upload to {slug} failed ({first_line(err)}); the file is unchanged") from None
    text = getattr(result, "message", None) or str(result)
    # kaggle 2.x does not raise on a refused upload: it returns this message instead
    if "could not submit" in text.lower():
        raise PipelineError(f"{path}: Kaggle refused the upload to {slug} ({text}); the file is unchanged")
    return text
