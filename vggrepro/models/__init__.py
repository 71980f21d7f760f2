"""Section 2 of the paper: the architectures of Table 1 (``vgg``), what they cost and see
(``measure``: Table 2's counts, multiply-adds, receptive fields), and how they start
(``init``: section 3.1's initialisation, checked loading). ``vggrepro.models`` is their API."""

from .init import (
    INIT_FROM_A_LAYERS,
    check_state_dict,
    expected_shapes,
    init_fan_in,
    init_from,
    init_glorot,
    load_state_dict,
)
from .measure import (
    activation_bytes,
    count_macs,
    count_params,
    fc_params,
    input_gradient,
    layer_table,
    measured_receptive_field,
    receptive_field,
)
from .vgg import (
    CONFIGS,
    DROPOUT,
    FC_WIDTH,
    LRN,
    LRN_SETTINGS,
    TORCHVISION_NAMES,
    VARIANTS,
    VGG,
    DenseVGG,
    build,
    config_layers,
    describe,
    init_gaussian,
    pooled,
    score_map_size,
    to_dense,
    weight_layers,
    weighted_layers,
)

__all__ = [
    "CONFIGS", "DROPOUT", "FC_WIDTH", "INIT_FROM_A_LAYERS", "LRN", "LRN_SETTINGS", "TORCHVISION_NAMES",
    "VARIANTS", "VGG", "DenseVGG", "activation_bytes", "build", "check_state_dict", "config_layers",
    "count_macs", "count_params", "describe", "expected_shapes", "fc_params", "init_fan_in", "init_from",
    "init_glorot", "init_gaussian", "input_gradient", "layer_table", "load_state_dict",
    "measured_receptive_field", "pooled", "receptive_field", "score_map_size", "to_dense", "weight_layers",
    "weighted_layers",
]
