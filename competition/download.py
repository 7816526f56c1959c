"""Get a competition's raw files: use them if present, build the demo, or download with the kaggle client."""
from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import tarfile
import zipfile
from pathlib import Path

from competition import settings
from competition.config import Competition
from competition.demo import build_digits_demo
from competition.errors import PipelineError, first_line
from competition.fileio import atomic_dir, write_text
from competition.registry import load_competition


def prepare(competition: Competition, force: bool = False) -> Path:
    """Make sure ``data/raw/<slug>/`` holds the competition's files; return that folder.

    Files already there are used as they are (a test split is optional: a train split alone
    is enough to train); only a competition without its train split is fetched.
    """
    raw = competition.raw_dir
    if competition.source == "local":
        if not competition.has_split("train"):
            raise PipelineError(f"{raw}: no train split found; put the competition's files there")
    elif force or not competition.has_split("train"):
        fetch(competition)
    write_text(ready_file(competition.slug), f"{raw}\n")
    return raw


def ready_file(slug: str) -> Path:
    """Written when ``data/raw/<slug>/`` is complete; the Makefile's data target."""
    return settings.raw_dir(slug).parent / f"{slug}.ready"


def fetch(competition: Competition) -> None:
    raw = competition.raw_dir
    if competition.source == "builtin:digits":
        build_digits_demo(competition)
        return
    if competition.source != "kaggle":
        raise PipelineError(f"{competition.slug}: unknown source '{competition.source}' (use 'kaggle')")
    archive = local_archive(competition.slug, raw.parent) or download(competition.slug, raw.parent)
    extract(archive, raw)
    if not competition.splits:  # a config without [splits]: lay them out from what was unpacked
        competition = load_competition(competition.slug)
    if not competition.has_split("train"):
        raise PipelineError(
            f"{archive}: unpacked, but {competition.split_path('train')} is missing; "
            f"check the [splits] in the competition's config"
        )


def download(slug: str, folder: Path) -> Path:
    """Download ``<slug>.zip`` into ``folder`` with the kaggle client; return its path."""
    api = kaggle_api()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        api.competition_download_files(slug, path=str(folder), force=False, quiet=False)
    except Exception as err:  # the client raises many types; all mean the same to the user
        raise PipelineError(explain_kaggle_error(slug, err, "download")) from None
    archive = folder / f"{slug}.zip"
    if not archive.exists():
        raise PipelineError(f"{archive}: the kaggle client reported success but wrote no archive")
    return archive


def local_archive(slug: str, folder: Path) -> Path | None:
    """``<slug>.zip`` (or ``.tar.gz``, ``.tgz``, ``.tar``) already in ``folder``: unpacked instead of downloading."""
    for suffix in (".zip", ".tar.gz", ".tgz", ".tar"):
        if (folder / f"{slug}{suffix}").is_file():
            return folder / f"{slug}{suffix}"
    return None


def extract(archive: Path, target: Path) -> Path:
    """Unpack a zip or tar ``archive`` into ``target`` atomically, refusing members that escape it."""
    if not zipfile.is_zipfile(archive) and tarfile.is_tarfile(archive):
        return _extract_tar(archive, target)
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                if _escapes(member):
                    raise PipelineError(
                        f"{archive}: member '{member}' would be written outside {target}; refusing the archive"
                    )
            with atomic_dir(target) as tmp:
                zf.extractall(tmp)
                keep_local_files(target, tmp)
    except zipfile.BadZipFile:
        raise PipelineError(f"{archive}: not a valid zip file; delete it and run `make data` again") from None
    return target


def _extract_tar(archive: Path, target: Path) -> Path:
    try:
        with tarfile.open(archive) as tf:
            for member in tf.getmembers():
                if _escapes(member.name) or ((member.issym() or member.islnk()) and (
                        _escapes(member.linkname) or os.path.isabs(member.linkname))):
                    raise PipelineError(
                        f"{archive}: member '{member.name}' would be written outside {target}; refusing the archive"
                    )
            with atomic_dir(target) as tmp:
                tf.extractall(tmp, filter="data")
                keep_local_files(target, tmp)
    except tarfile.TarError as err:
        raise PipelineError(f"{archive}: not a valid tar file ({first_line(err)}); replace it") from None
    return target


def keep_local_files(target: Path, unpacked: Path) -> None:
    """Carry into ``unpacked`` each entry of ``target`` the archive lacks (a hand-written competition.toml).

    Hard links (copies across file systems), not moves: the originals stay until the folder is swapped, so a
    failure before then loses nothing.
    """
    if not target.is_dir():
        return
    for entry in os.scandir(target):
        kept = unpacked / entry.name
        if os.path.lexists(kept):
            continue
        if entry.is_symlink():
            os.symlink(os.readlink(entry.path), kept)
        elif entry.is_dir():
            shutil.copytree(entry.path, kept, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(entry.path, kept)


def _link_or_copy(source: str, destination: str) -> None:
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


def _escapes(member: str) -> bool:
    """An absolute name, a drive letter, or a ``..`` that climbs out of the target folder."""
    normalized = member.replace("\\", "/")
    if normalized.startswith("/") or (len(normalized) > 1 and normalized[1] == ":"):
        return True
    return ".." in Path(os.path.normpath(normalized)).parts


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
    if status == 403 or (status is None and ("403" in text or "Forbidden" in text)):
        return (f"{slug}: Kaggle answered 403 Forbidden to the {action}: accept the competition's rules on "
                f"https://www.kaggle.com/competitions/{slug}/rules first (the API cannot accept them) [{text}]")
    if status == 401:
        return f"{slug}: Kaggle refused the credentials (401 Unauthorized); renew your API token on kaggle.com"
    if status == 404 or (status is None and "404" in text):
        return f"{slug}: Kaggle has no such competition (404) or it is closed; check the slug"
    if status is not None and status >= 500:
        return f"{slug}: Kaggle server error ({status}) on the {action}; try again later"
    if _is_network_error(err):
        return f"{slug}: cannot reach Kaggle for the {action} ({_network_reason(text)}); check your network"
    return f"{slug}: Kaggle {action} failed ({text}); check your network and credentials"


_explain_kaggle_error = explain_kaggle_error


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
