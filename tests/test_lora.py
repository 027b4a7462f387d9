"""LoRA written by hand (course_utils/lora.py) against Hugging Face `peft`:
the same A and B give the same outputs, merging gives the same model, the
same weights train; and the properties LoRA rests on: the adapted model
starts as the pretrained one, W stays frozen, the update has rank r."""

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model
from torch import nn
from transformers import BertConfig, BertModel

from course_utils.lora import LoRALinear, add_lora, merge_lora, trainable_parameters

# A small BERT of MiniLM's shape (lesson 09's encoder), built from a local config: no weights downloaded.
CONFIG = BertConfig(vocab_size=120, hidden_size=48, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=96, max_position_embeddings=32, hidden_dropout_prob=0.0,
                    attention_probs_dropout_prob=0.0)
TARGETS = ("query", "value")


def bert() -> BertModel:
    torch.manual_seed(0)
    return BertModel(CONFIG).eval()


def both(rank: int = 4, alpha: float = 8.0):
    """(ours, peft's) adapters on two copies of one BERT, with peft's A and B
    (B made non-zero, as after training) copied into ours."""
    theirs = get_peft_model(bert(), LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(TARGETS),
                                               lora_dropout=0.0))
    ours = add_lora(bert(), lambda name: name.endswith(TARGETS), rank, alpha)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, module in theirs.named_modules():
            if hasattr(module, "lora_A") and isinstance(module.lora_A, nn.ModuleDict):
                module.lora_B["default"].weight.copy_(0.1 * torch.randn(module.lora_B["default"].weight.shape,
                                                                        generator=generator))
                mine = ours.get_submodule(name.removeprefix("base_model.model."))
                mine.lora_A.copy_(module.lora_A["default"].weight)
                mine.lora_B.copy_(module.lora_B["default"].weight)
    return ours, theirs


def inputs():
    ids = torch.randint(CONFIG.vocab_size, (3, 10), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0  # a padded row
    return {"input_ids": ids, "attention_mask": mask}


def test_the_same_a_and_b_give_peft_s_outputs():
    ours, theirs = both()
    with torch.no_grad():
        mine, reference = ours(**inputs()).last_hidden_state, theirs(**inputs()).last_hidden_state
    assert torch.allclose(mine, reference, atol=1e-6, rtol=0), (mine - reference).abs().max()
    assert not torch.allclose(reference, bert()(**inputs()).last_hidden_state, atol=1e-3), "B must change the model"


def test_merging_gives_peft_s_merged_model():
    ours, theirs = both()
    merged, reference = merge_lora(ours), theirs.merge_and_unload()
    assert not any(isinstance(module, LoRALinear) for module in merged.modules())
    for (name, mine), (_, theirs_) in zip(merged.state_dict().items(), reference.state_dict().items()):
        assert torch.allclose(mine, theirs_, atol=1e-6, rtol=0), name
    with torch.no_grad():
        assert torch.allclose(merged(**inputs()).last_hidden_state, reference(**inputs()).last_hidden_state,
                              atol=1e-6, rtol=0)


def test_the_same_weights_train_as_with_peft():
    ours, theirs = both(rank=8, alpha=16.0)
    assert trainable_parameters(ours) == sum(p.numel() for p in theirs.parameters() if p.requires_grad)
    # r · (in + out) for each adapted 48 × 48 projection: 2 per layer, 2 layers
    assert trainable_parameters(ours) == 2 * 2 * 8 * (48 + 48)
    names = {name for name, p in ours.named_parameters() if p.requires_grad}
    assert names and all(name.endswith(("lora_A", "lora_B")) for name in names)


def test_a_new_adapter_leaves_the_model_as_it_was_and_w_frozen():
    base = nn.Linear(16, 12)
    x = torch.randn(5, 16, generator=torch.Generator().manual_seed(3))
    before = base(x).detach()
    layer = LoRALinear(copy.deepcopy(base), rank=4, alpha=8)
    assert torch.equal(layer(x), before), "B starts at zero: the adapted layer is the pretrained one"
    layer(x).pow(2).sum().backward()
    assert layer.base.weight.grad is None and layer.base.bias.grad is None
    assert layer.lora_A.grad is not None and layer.lora_B.grad is not None
    assert torch.count_nonzero(layer.lora_A.grad) == 0, "with B = 0 the first gradient reaches B only"


def test_the_update_has_rank_r_and_scale_alpha_over_r():
    layer = LoRALinear(nn.Linear(20, 30), rank=3, alpha=6)
    with torch.no_grad():
        layer.lora_B.normal_(generator=torch.Generator().manual_seed(4))
    update = layer.merged().weight - layer.base.weight  # in float32: W's rounding adds noise of full rank
    assert torch.allclose(update, 2.0 * layer.lora_B @ layer.lora_A, atol=1e-6)
    assert torch.linalg.matrix_rank((layer.lora_B.double() @ layer.lora_A.double()).detach()) == 3


def test_float64_and_dropout_on_the_update_only():
    layer = LoRALinear(nn.Linear(8, 8).double(), rank=2, dropout=0.5)
    assert layer.lora_A.dtype == layer.lora_B.dtype == torch.float64
    layer.eval()
    x = torch.randn(4, 8, dtype=torch.float64)
    assert torch.equal(layer(x), layer.base(x))


def test_targets_that_match_nothing_and_a_rank_of_zero_are_refused():
    with pytest.raises(ValueError, match="no nn.Linear of the model matches"):
        add_lora(bert(), lambda name: name.endswith("nothing"))
    with pytest.raises(ValueError, match="rank must be at least 1"):
        LoRALinear(nn.Linear(4, 4), rank=0)


def test_add_lora_takes_a_layer_class_written_the_same_way():
    class Plain(nn.Module):  # a learner's layer: (base, rank, alpha), no dropout argument
        def __init__(self, base, rank, alpha):
            super().__init__()
            self.base, self.rank, self.alpha = base, rank, alpha

        def forward(self, x):
            return self.base(x)

    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    add_lora(model, lambda name: name == "2", rank=3, alpha=6, layer=Plain)
    assert isinstance(model[2], Plain) and (model[2].rank, model[2].alpha) == (3, 6)
    assert isinstance(model[0], nn.Linear) and not any(p.requires_grad for p in model.parameters())
