import pytest

from competition.config import list_competitions, load_competition
from competition.errors import PipelineError


def test_shipped_configs_load():
    assert {"digits-demo", "gic-unibuc-dl-2023"} <= set(list_competitions())
    gic = load_competition("gic-unibuc-dl-2023")
    assert gic.num_classes == 100 and gic.image_size == (64, 64) and gic.channels == 3
    assert gic.splits["train"].csv == "train.csv" and gic.splits["val"].images == "val_images"
    assert gic.image_column == "Image" and gic.label_column == "Class"


def test_competition_config_in_raw_folder_wins(tiny, home):
    comp = load_competition("tiny")
    assert comp.image_size == (16, 16)
    assert comp.raw_dir == home / "data" / "raw" / "tiny"


def test_unknown_competition_is_one_clear_line(home):
    with pytest.raises(PipelineError, match="no config for competition 'nope'"):
        load_competition("nope")


def test_bad_config_names_the_file(home):
    path = home / "bad.toml"
    path.write_text('slug = "x"\n[splits.train]\ncsv = "train.csv"\n')
    with pytest.raises(PipelineError, match="bad.toml.*images"):
        load_competition(str(path))
    path.write_text('slug = "x"\ncolour = 1\n[splits.train]\ncsv="a"\nimages="b"\n[splits.test]\ncsv="c"\nimages="d"\n')
    with pytest.raises(PipelineError, match="unknown setting.*colour"):
        load_competition(str(path))
