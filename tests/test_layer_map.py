import pytest
from transformers import BertConfig

from tinybert_core.layer_map import LayerMapError, build_layer_map, explicit_layer_map, uniform_layer_map


def config(layers: int, heads: int = 12) -> BertConfig:
    return BertConfig(num_hidden_layers=layers, num_attention_heads=heads, hidden_size=heads * 4)


def test_uniform_map_is_m_times_n_over_m():
    assert uniform_layer_map(4, 12).teacher_of == (3, 6, 9, 12)  # TinyBERT4 from BERT-base
    assert uniform_layer_map(3, 6).pairs == ((1, 2), (2, 4), (3, 6))
    assert uniform_layer_map(6, 6).teacher_of == (1, 2, 3, 4, 5, 6)


def test_uniform_map_refuses_non_divisible_depths_and_suggests_a_map():
    with pytest.raises(LayerMapError, match=r"multiple .* explicit layer map.*\[2, 3, 5, 6\]"):
        uniform_layer_map(4, 6)


def test_explicit_map_is_validated():
    assert explicit_layer_map([2, 3, 5, 6], 4, 6).pairs == ((1, 2), (2, 3), (3, 5), (4, 6))
    with pytest.raises(LayerMapError, match="has 3 entries"):
        explicit_layer_map([2, 4, 6], 4, 6)
    with pytest.raises(LayerMapError, match=r"outside 1..6"):
        explicit_layer_map([0, 2, 4, 7], 4, 6)


def test_build_layer_map_checks_heads_and_uses_explicit_map():
    with pytest.raises(LayerMapError, match="12 heads and the teacher 8"):
        build_layer_map(config(2, heads=12), config(4, heads=8))
    assert build_layer_map(config(4), config(6), explicit=[1, 2, 4, 6]).teacher_of == (1, 2, 4, 6)
    with pytest.raises(LayerMapError):
        build_layer_map(config(4), config(6))
