import subprocess
import sys

import pandas as pd
import pytest


@pytest.mark.slow
def test_demo_chain_data_train_predict_csv(home):
    """data -> train (3 epochs) -> predict -> CSV, checked row for row against test.csv."""
    result = subprocess.run([sys.executable, "-m", "kip", "demo", "--set", "epochs=3", "--set", "verbose=0"],
                            capture_output=True, text=True, cwd=home)
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "validation accuracy:" in out and "validation macro F1:" in out and "test accuracy:" in out
    csv = out.split("submission:")[-1].strip()
    submission = pd.read_csv(csv)
    test = pd.read_csv(home / "data/raw/digits-demo/test.csv")
    assert list(submission.columns) == ["Image", "Class"]
    assert submission.Image.tolist() == test.Image.tolist()
    assert submission.Class.between(0, 9).all() and len(submission) == len(test) == 360
    accuracy = float(out.split("test accuracy:")[1].split()[0])
    assert accuracy > 0.3  # three short epochs (11 steps each) already learn the digits; chance is 0.1
