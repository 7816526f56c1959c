"""The kaggle client, authenticated quietly, and its errors turned into one line with credentials redacted."""
from __future__ import annotations

import contextlib
import io
import os
import re

from competition.errors import PipelineError, first_line


def kaggle_api():
    """An authenticated ``KaggleApi``, or a PipelineError saying how to add credentials.

    ``import kaggle`` already tries to authenticate and, like ``authenticate()``, prints a page of help to stdout
    when there are no credentials: that output is swallowed here and replaced by one line.
    """
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            from kaggle.api.kaggle_api_extended import KaggleApi
        except ImportError as err:
            raise PipelineError(f"the kaggle client is not installed ({err}); run `make venv`") from None
        api = KaggleApi()
        try:
            api.authenticate()
        except (Exception, SystemExit) as err:
            if _is_network_error(err):  # a KAGGLE_API_TOKEN is checked with the server
                raise PipelineError(f"cannot reach Kaggle to check the credentials "
                                    f"({_network_reason(redact(first_line(err)))}); "
                                    f"check your network") from None
            raise PipelineError(
                "no Kaggle credentials: put kaggle.json in ~/.kaggle/ (Kaggle > Settings > API), "
                "or set KAGGLE_USERNAME and KAGGLE_KEY, or KAGGLE_API_TOKEN"
            ) from None
    values = getattr(api, "config_values", {}) or {}
    _SECRETS.update(str(values[name]) for name in ("key", "token") if values.get(name))  # also from kaggle.json
    return api


_SECRETS: set[str] = set()


def _is_network_error(err: BaseException) -> bool:
    try:
        import requests
    except ImportError:
        return False
    return isinstance(err, (requests.ConnectionError, requests.Timeout))


def explain_kaggle_error(slug: str, err: BaseException, action: str = "request") -> str:
    """One line for a failed kaggle client call, by HTTP status where there is one; credentials redacted.

    Kaggle answers JSON errors ({"code": 403, "message": "You must accept this competition's rules ..."}), which
    kagglesdk raises as an HTTPError carrying only the message, so the status is read from the response.
    """
    text = redact(first_line(err))
    status = getattr(getattr(err, "response", None), "status_code", None)
    if status is None and _is_network_error(err):  # no answer at all (its text may hold a port such as 40377)
        return f"{slug}: cannot reach Kaggle for the {action} ({_network_reason(text)}); check your network"
    if status == 403 or (status is None and (re.search(r"\b403\b", text) or "Forbidden" in text)):
        return (f"{slug}: Kaggle answered 403 Forbidden to the {action}: accept the competition's rules on "
                f"https://www.kaggle.com/competitions/{slug}/rules first (the API cannot accept them) [{text}]")
    if status == 401:
        return f"{slug}: Kaggle refused the credentials (401 Unauthorized); renew your API token on kaggle.com"
    if status == 404 or (status is None and re.search(r"\b404\b", text)):
        return f"{slug}: Kaggle has no such competition (404) or it is closed; check the slug"
    if status is not None and status >= 500:
        return f"{slug}: Kaggle server error ({status}) on the {action}; try again later"
    return f"{slug}: Kaggle {action} failed ({text}); check your network and credentials"


def _network_reason(text: str) -> str:
    """The useful end of a requests/urllib3 connection error: '[Errno 111] Connection refused', not the whole chain."""
    found = re.findall(r"\[Errno -?\d+\] [^'\")]+", text)
    if found:
        return f"{text.split(':')[0]}: {found[-1].strip()}"
    return text if len(text) <= 160 else text[:157] + "..."


def redact(text: str) -> str:
    """``text`` with any credential value the kaggle client could have read replaced by ``***``."""
    secrets = [os.environ.get(name, "") for name in ("KAGGLE_KEY", "KAGGLE_API_TOKEN")] + sorted(_SECRETS)
    for secret in secrets:
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    return re.sub(r"(//)[^/@\s]+:[^/@\s]+@", r"\1***@", text)  # user:password@ in a proxy or URL
