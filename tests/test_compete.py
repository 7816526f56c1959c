import json
from pathlib import Path

from submissions.compete import compete, unfinished_compete


def test_compete_runs_its_plan_resumably_and_writes_a_submission(tiny, home):
    lines = []
    result = compete("tiny", 10, ["epochs=1", "batch_size=8", "verbose=0"], say=lines.append)
    assert result.submission.path.exists() and 0 <= result.estimate <= 1 and result.estimate_of == "validation"
    [folder] = (home / "runs").glob("compete-*")
    state = json.loads((folder / "plan.json").read_text())
    assert state["done"] and list(state["members"]) == ["cnn"] and state["submission"] == str(result.submission.path)
    assert state["members"]["cnn"]["score"] == result.estimate and "cnn" in state["planned"]
    assert any("refit skipped" in line for line in lines) and "compete: plan for 10 minutes: cnn x 1 run" in lines
    assert unfinished_compete("tiny", 10) is None  # a finished compete is not reopened: the same command starts anew
    (folder / "plan.json").write_text(json.dumps({**state, "done": False}))  # as if killed before its end
    assert unfinished_compete("tiny", 10) == folder and unfinished_compete("tiny", 20) is None  # same budget only
    trained = sorted(p.name for p in (home / "runs").glob("cnn-*"))
    lines.clear()
    again = compete("tiny", 10, ["epochs=1", "batch_size=8", "verbose=0"], say=lines.append)
    assert f"compete: continuing {folder}" in lines and any("run already finished" in line for line in lines)
    assert sorted(p.name for p in (home / "runs").glob("cnn-*")) == trained  # nothing trained again
    assert again.estimate == result.estimate and json.loads((folder / "plan.json").read_text())["done"]


def test_compete_with_refit_blends_the_refits_and_resumes_an_unfinished_one(tiny, home):
    lines = []
    result = compete("tiny", 11, ["epochs=1", "batch_size=8", "verbose=0"], say=lines.append, refit=True)
    [folder] = (home / "runs").glob("compete-*")
    state = json.loads((folder / "plan.json").read_text())
    refitted = Path(state["refits"]["cnn"]["folder"])
    assert state["refits"]["cnn"]["done"] and refitted.name.endswith("-refit") and result.refit
    assert json.loads((refitted / "config.json").read_text())["refit_of"] == state["members"]["cnn"]["folder"]
    sidecar = json.loads(result.submission.path.with_suffix(".json").read_text())
    assert "-refit" in result.submission.path.name and "no validation score of its own" in sidecar["note"]
    assert result.estimate == state["members"]["cnn"]["score"]  # the run's validation score, as an estimate
    assert any(line.startswith("  - refit (REFIT=1): each run") for line in lines)
    assert unfinished_compete("tiny", 11) is None
    state["refits"]["cnn"]["done"], state["done"] = False, False  # as if killed during the refit
    (folder / "plan.json").write_text(json.dumps(state))
    assert unfinished_compete("tiny", 11) is None and unfinished_compete("tiny", 11, refit=True) == folder
    lines.clear()
    again = compete("tiny", 11, ["epochs=1", "batch_size=8", "verbose=0"], say=lines.append, refit=True)
    assert any("run already finished" in line for line in lines)
    assert f"compete: cnn: refit of {Path(state['members']['cnn']['folder']).name} on every labelled image" in lines
    assert sorted(p.name for p in (home / "runs").glob("*-refit")) == [refitted.name]  # the same folder, resumed
    assert again.submission.path.exists()
