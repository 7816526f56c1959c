"""Get a competition's raw files: use them if present, build the demo, or download with the kaggle client."""
from __future__ import annotations

import os
import shutil
import tarfile
import zipfile
from pathlib import Path

from competition import settings
from competition.config import Competition
from competition.demo import build_digits_demo
from competition.errors import PipelineError, first_line
from competition.fileio import atomic_dir, write_text
from competition.kaggle_client import explain_kaggle_error, kaggle_api
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
