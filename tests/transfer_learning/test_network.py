"""The one table of the network and the contract, checked against VGG arithmetic done
here by hand rather than against the grader's own table."""
from __future__ import annotations

from grader.exercises.transfer_learning import network, vgg_weights


def _vgg_by_hand():
    """(name, output shape, kernel and bias shapes) for VGG16 up to pool3 on 32x32 RGB:
    3x3 'same' convolutions keep the size, each 2x2 pool with stride 2 halves it."""
    rows = [("preprocess", (32, 32, 3), ())]
    size, cin = 32, 3
    for block, (n, cout) in enumerate([(2, 64), (2, 128), (3, 256)], start=1):
        for i in range(1, n + 1):
            rows.append((f"conv{block}_{i}", (size, size, cout), ((3, 3, cin, cout), (cout,))))
            cin = cout
        size //= 2
        rows.append((f"pool{block}", (size, size, cout), ()))
    rows.append(("flatten", (4 * 4 * 256,), ()))
    rows.append(("fc", (10,), ((4096, 10), (10,))))
    return rows


def test_layer_table_matches_vgg_arithmetic():
    """Do names, order, output shapes and parameter shapes agree with VGG16 by hand?"""
    assert [(l.name, l.output, l.params) for l in network.LAYERS] == _vgg_by_hand()


def test_derived_tables():
    assert network.FC_PARAMS == 4096 * 10 + 10 == 40970
    assert network.CONV_LAYERS == ["conv1_1", "conv1_2", "conv2_1", "conv2_2",
                                   "conv3_1", "conv3_2", "conv3_3"]
    assert network.FEATURE_LAYERS[0] == "conv1_1" and network.FEATURE_LAYERS[-1] == "pool3"
    assert network.WEIGHT_KEYS[:2] == ["conv1_1_W", "conv1_1_b"] and len(network.WEIGHT_KEYS) == 14


def test_weight_keys_exist_in_the_weights_file_with_the_table_shapes():
    shapes = vgg_weights.expected_shapes()
    for layer in network.LAYERS:
        for key, shape in zip(layer.weight_keys, layer.params):
            assert shapes[key] == shape, key


def test_handout_table_lists_every_layer():
    table = network.layer_table_markdown()
    for layer in network.LAYERS:
        assert f"| `{layer.name}` |" in table
    assert "[4096, 10], [10]" in table and "[3, 3, 3, 64], [64]" in table


def test_contract_parameters_match_the_reference_signatures(reference):
    import inspect

    for name, params in network.CONTRACT.items():
        found = list(inspect.signature(getattr(reference, name)).parameters)
        assert [p for p in params if p not in found] == [], name
