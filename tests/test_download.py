import io as bytes_io
import tarfile
import zipfile

import pytest

from competition.config import load_competition
from competition.download import extract, prepare, ready_file
from competition.errors import PipelineError
from tests.conftest import write_competition


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
