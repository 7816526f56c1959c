import subprocess
import sys


def run_cli(*args, home):
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True, text=True,
                          env={"KIP_HOME": str(home), "PATH": "/usr/bin:/bin", "HOME": str(home),
                               "KAGGLE_CONFIG_DIR": str(home / "nokaggle")}, cwd=home)


def test_bad_input_gives_one_line_and_a_nonzero_exit_without_traceback(home):
    result = run_cli("train", "--competition", "nope", home=home)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: no config for competition 'nope'")


def test_submit_without_a_submission_says_what_to_do(home):
    result = run_cli("submit", "--competition", "digits-demo", home=home)
    assert result.returncode == 2 and "run `make predict` first" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_setting_is_refused(tiny, home):
    result = run_cli("train", "--competition", "tiny", "--set", "epochs=many", home=home)
    assert result.returncode == 2 and "epochs needs a int" in result.stderr
