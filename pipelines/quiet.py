"""Import TensorFlow without the start-up noise a CPU user reads as failure.

TensorFlow's C++ side writes lines such as "failed call to cuInit: ... CUDA error", "Could not find cuda drivers"
and oneDNN/CPU-feature notices straight to the process's stderr, some of them before its log level applies.
``import_tensorflow`` captures file descriptor 2 while TensorFlow loads and looks for devices, drops the lines
known to be noise, and prints everything else, so a real problem still shows.
"""
from __future__ import annotations

import os
import re
import sys
import tempfile

NOISE = re.compile(
    r"absl::InitializeLog|port\.cc:.*oneDNN|cudart_stub\.cc|cpu_feature_guard\.cc|To enable the following "
    r"instructions|cuda_platform\.cc|cuInit|Unable to register cu(DNN|FFT|BLAS) factory|computation_placer\.cc|"
    r"TF-TRT Warning|oneDNN custom operations are on")


def import_tensorflow():
    """``import tensorflow`` (and list its devices, where CUDA complains) with the known noise filtered out."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices("GPU")
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [line for line in capture.read().decode(errors="replace").splitlines()
                    if line.strip() and not NOISE.search(line)]
            if kept:
                print("\n".join(kept), file=sys.stderr)
    return tf
