import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_tensorflow_start_up_noise_is_dropped_and_other_lines_kept():
    from pipelines.quiet import NOISE

    noise = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1795601610.914972    4660 port.cc:153] oneDNN custom operations are on. You may see ...",
        "I0000 00:00:1795601610.915674    4660 cudart_stub.cc:31] Could not find cuda drivers on your machine",
        "E0000 00:00:1795601615.822401    4660 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error",
        "To enable the following instructions: AVX2 AVX512F AVX512_VNNI AVX512_BF16 FMA, in other operations, ...",
    ]
    assert all(NOISE.search(line) for line in noise)
    assert not NOISE.search("E0000 something_else.cc:12] Out of memory while trying to allocate 1.2GiB")


def test_a_training_command_prints_no_cuda_noise(home):
    code = "from pipelines.quiet import import_tensorflow; tf = import_tensorflow(); print(int(tf.constant(2)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.stdout.strip() == "2"
    assert "cuInit" not in result.stderr and "absl::InitializeLog" not in result.stderr


def test_progress_is_one_line_per_epoch_when_not_on_a_terminal(monkeypatch):
    import io

    from pipelines.train import progress_verbosity

    monkeypatch.setattr(sys, "stdout", io.StringIO())
    assert progress_verbosity(1) == 2 and progress_verbosity(0) == 0 and progress_verbosity(2) == 2
