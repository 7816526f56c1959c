"""A script's main() run by run_main: its status, and a PipelineError as one line with exit 2."""
import pytest

from competition.errors import PipelineError, first_line, run_main


def test_run_main_exits_with_the_status_main_returns():
    with pytest.raises(SystemExit) as stop:
        run_main(lambda: 0)
    assert stop.value.code == 0


def test_run_main_turns_a_pipeline_error_into_one_line_and_exit_2(capsys):
    def main():
        raise PipelineError("data.csv row 3: bad label; fix the row")

    with pytest.raises(SystemExit) as stop:
        run_main(main)
    assert stop.value.code == 2
    assert capsys.readouterr().err == "error: data.csv row 3: bad label; fix the row\n"


def test_first_line_keeps_the_type_and_the_first_non_empty_line():
    assert first_line(ValueError("\n  first\nsecond")) == "ValueError: first"
