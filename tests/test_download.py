import io as bytes_io
import subprocess
import sys
import tarfile
import zipfile

import pytest

from competition.download import extract, prepare, ready_file
from competition.errors import PipelineError
from competition.registry import load_competition
from tests.conftest import write_competition
from tests.kaggle_server import FakeKaggle, client_env, zip_folder


def make_zip(path, members):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def make_tar(path, members, link=None):
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, bytes_io.BytesIO(data))
        if link:
            info = tarfile.TarInfo(link[0])
            info.type, info.linkname = tarfile.SYMTYPE, link[1]
            tf.addfile(info)
    return path


@pytest.mark.parametrize("member", ["../evil.csv", "train/../../evil.csv", "/tmp/evil.csv", "C:/evil.csv",
                                    "..\\evil.csv"])
def test_zip_whose_members_escape_is_refused_and_nothing_is_written(tmp_path, member):
    archive = make_zip(tmp_path / "comp.zip", {"train.csv": b"Image,Class\n", member: b"x"})
    target = tmp_path / "raw" / "comp"
    with pytest.raises(PipelineError, match="would be written outside") as err:
        extract(archive, target)
    assert "\n" not in str(err.value) and member in str(err.value)
    assert not target.exists() and not (tmp_path / "evil.csv").exists()
    assert not list((tmp_path / "raw").glob(".*")) if (tmp_path / "raw").exists() else True


@pytest.mark.parametrize("members, link", [({"../evil.csv": b"x"}, None),
                                           ({"train.csv": b"Image,Class\n"}, ("train_images", "/etc"))])
def test_tar_whose_members_or_links_escape_is_refused(tmp_path, members, link):
    archive = make_tar(tmp_path / "comp.tar.gz", members, link)
    with pytest.raises(PipelineError, match="would be written outside"):
        extract(archive, tmp_path / "raw" / "comp")
    assert not (tmp_path / "raw" / "comp").exists()


def test_good_archives_unpack(tmp_path):
    target = extract(make_zip(tmp_path / "a.zip", {"train.csv": b"Image,Class\n", "train_images/a.png": b"p"}),
                     tmp_path / "a")
    assert (target / "train_images" / "a.png").read_bytes() == b"p"
    target = extract(make_tar(tmp_path / "b.tar.gz", {"sub/train.csv": b"x"}), tmp_path / "b")
    assert (target / "sub" / "train.csv").read_bytes() == b"x"


def test_a_bad_archive_is_one_line(tmp_path):
    (tmp_path / "c.zip").write_bytes(b"not a zip")
    with pytest.raises(PipelineError, match="not a valid zip"):
        extract(tmp_path / "c.zip", tmp_path / "c")


def test_prepare_uses_files_already_there_without_a_test_split(home):
    raw = write_competition(home, slug="gic-like", per_class=(4, 0, 0), with_val=False)
    for name in ("test.csv", "test_labels.csv", "sample_submission.csv"):
        (raw / name).unlink()
    comp = load_competition("gic-like")  # source is kaggle: no credentials are needed since train is there
    assert prepare(comp) == raw and ready_file("gic-like").exists()


def test_prepare_unpacks_an_archive_placed_beside_the_raw_folder(home):
    config = home / "data" / "raw" / "packed.toml"
    config.parent.mkdir(parents=True)
    config.write_text('slug = "packed"\n')  # no [splits]: detected after unpacking
    make_zip(home / "data" / "raw" / "packed.zip", {
        "packed/train/a/1.png": b"x", "packed/train/b/2.png": b"y"})
    comp = load_competition(str(config))
    raw = prepare(comp)
    assert (raw / "packed" / "train" / "a" / "1.png").exists()
    assert load_competition(str(config)).splits["train"].images == "packed/train"


def zipped_competition(home, slug, with_config=False):
    """A CSV competition zipped the way Kaggle packs one (no competition.toml unless asked): the zip's bytes."""
    source = write_competition(home / "elsewhere", slug=slug, per_class=(3, 1, 1))
    if not with_config:
        (source / "competition.toml").unlink()
    return zip_folder(source)


@pytest.mark.parametrize("splits", ["", '[splits.train]\ncsv = "train.csv"\nimages = "train_images"\n'])
def test_unpacking_keeps_a_hand_written_config(home, splits):
    raw = home / "data" / "raw" / "packed"
    raw.mkdir(parents=True)
    config = f'slug = "packed"\ntitle = "mine"\nimage_size = [8, 8]\n{splits}'
    (raw / "competition.toml").write_text(config)
    (home / "data" / "raw" / "packed.zip").write_bytes(zipped_competition(home, "packed"))
    assert prepare(load_competition("packed")) == raw
    assert (raw / "competition.toml").read_text() == config and (raw / "train.csv").exists()
    comp = load_competition("packed")
    assert (comp.title, comp.image_size, comp.splits["train"].images) == ("mine", (8, 8), "train_images")
    assert not [p.name for p in raw.parent.iterdir() if p.name.startswith(".")]  # no temporary left


def test_unpacking_keeps_what_the_archive_lacks_and_takes_what_it_has(tmp_path):
    target = tmp_path / "raw" / "comp"
    (target / "notes").mkdir(parents=True)
    (target / "notes" / "todo.txt").write_text("keep me")
    (target / "competition.toml").write_text('slug = "comp"\n')
    (target / "link").symlink_to("notes")
    (target / "train.csv").write_text("stale\n")
    extract(make_zip(tmp_path / "comp.zip", {"train.csv": b"Image,Class\n", "train_images/a.png": b"p"}), target)
    assert (target / "notes" / "todo.txt").read_text() == "keep me" and (target / "link").is_symlink()
    assert (target / "competition.toml").read_text() == 'slug = "comp"\n'
    assert (target / "train.csv").read_text() == "Image,Class\n" and (target / "train_images" / "a.png").exists()


@pytest.mark.parametrize("suffix", [".zip", ".tar.gz"])
def test_an_archive_without_any_config_or_folder_is_unpacked_and_detected(home, suffix):
    data = zipped_competition(home, "loose")
    archive = home / "data" / "raw" / f"loose{suffix}"
    archive.parent.mkdir(parents=True)
    if suffix == ".zip":
        archive.write_bytes(data)
    else:
        with zipfile.ZipFile(bytes_io.BytesIO(data)) as zf:
            make_tar(archive, {name: zf.read(name) for name in zf.namelist()})
    raw = prepare(load_competition("loose"))
    comp = load_competition("loose")
    assert raw == home / "data" / "raw" / "loose" and comp.title == "loose (detected)"
    assert set(comp.splits) == {"train", "val", "test"} and comp.sample_submission == "sample_submission.csv"


def test_an_unknown_slug_is_downloaded_with_the_kaggle_client_then_detected(home):
    archive = zipped_competition(home, "fetched")
    with FakeKaggle(lifetime=60) as fake:
        fake.add_competition("fetched", archive)
        result = subprocess.run([sys.executable, "-m", "kip", "data", "--competition", "fetched"],
                                capture_output=True, text=True, cwd=home, env=client_env(home, fake), timeout=120)
    assert result.returncode == 0, result.stderr
    assert "GET /files/fetched.zip" in fake.calls
    assert 'layout = "csv"' in result.stdout and "9 train, 3 val (val split), 3 test images" in result.stdout
    assert (home / "data/raw/fetched/train.csv").exists() and ready_file("fetched").exists()


def test_an_unknown_slug_without_credentials_says_so_in_one_line(home):
    result = subprocess.run([sys.executable, "-m", "kip", "data", "--competition", "nope"],
                            capture_output=True, text=True, cwd=home, env=client_env(home), timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: no Kaggle credentials")
    assert not (home / "data" / "raw" / "nope").exists()
