import numpy as np
import pytest

from competition.errors import PipelineError
from pipelines.models import MODELS, build_model


@pytest.mark.parametrize("arch", sorted(MODELS))
@pytest.mark.parametrize("num_classes", [2, 5])
def test_every_registered_model_builds_and_predicts(arch, num_classes):
    model = build_model(arch, (16, 16, 3), num_classes, dropout_rate=0.1)
    out = model.predict(np.zeros((2, 16, 16, 3), np.float32), verbose=0)
    assert out.shape == (2, 1 if num_classes == 2 else num_classes)
    assert model.get_layer("predictions").activation.__name__ == ("sigmoid" if num_classes == 2 else "softmax")


def test_cnn_has_the_reference_shape():
    model = build_model("cnn", (64, 64, 3), 100)
    convs = [layer.filters for layer in model.layers if layer.name.endswith("_conv")]
    dense = [layer.units for layer in model.layers if layer.name.startswith("dense") and hasattr(layer, "units")]
    assert convs == [64, 64, 128, 256] and dense == [256, 256]
    assert any("bn" in layer.name for layer in model.layers)


def test_resnet10_has_ten_weighted_layers_on_the_main_path():
    model = build_model("resnet10", (32, 32, 3), 10)
    main = [l for l in model.layers if l.name.endswith(("conv", "conv1", "conv2")) or l.name == "predictions"]
    assert len(main) == 10


def test_unknown_arch_is_a_clear_error():
    with pytest.raises(PipelineError, match="unknown ARCH 'vgg'"):
        build_model("vgg", (8, 8, 3), 3)
