"""The contrastive loss and its masking of in-batch false negatives."""

import math

import pytest
import torch

from vlclip.train import contrastive_loss, cosine_with_warmup, same_item_mask


def test_mask_marks_other_entries_of_the_same_item():
    mask = same_item_mask(["a", "b", "a", "c", "a"], torch.device("cpu"))
    assert mask.tolist() == [
        [False, False, True, False, True],
        [False, False, False, False, False],
        [True, False, False, False, True],
        [False, False, False, False, False],
        [True, False, True, False, False],
    ]


def test_symmetric_loss_matches_hand_computation():
    image = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    text = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    scale = torch.tensor(0.0)  # exp(0) = 1
    parts = contrastive_loss(image, text, scale)
    cos = 1 / math.sqrt(2)
    # image 0 vs texts: [1, cos]; image 1 vs texts: [0, cos]
    i2t = (
        -math.log(math.e / (math.e + math.exp(cos))) - math.log(math.exp(cos) / (1 + math.exp(cos)))
    ) / 2
    # text 0 vs images: [1, 0]; text 1 vs images: [cos, cos]
    t2i = (-math.log(math.e / (math.e + 1)) - math.log(0.5)) / 2
    assert parts["image_to_text"].item() == pytest.approx(i2t, rel=1e-5)
    assert parts["text_to_image"].item() == pytest.approx(t2i, rel=1e-5)
    assert parts["contrastive_loss"].item() == pytest.approx((i2t + t2i) / 2, rel=1e-5)


def test_duplicate_texts_are_not_negatives():
    # two photos of one product with the same text: without the mask the loss cannot go to zero
    image = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    text = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    scale = torch.tensor(math.log(100.0))
    unmasked = contrastive_loss(image, text, scale)["contrastive_loss"].item()
    mask = same_item_mask(["a", "a", "b"], torch.device("cpu"))
    masked = contrastive_loss(image, text, scale, mask)["contrastive_loss"].item()
    assert unmasked > 0.4
    assert masked < 1e-3


def test_schedule_warms_up_then_decays():
    values = [cosine_with_warmup(step, total=100, warmup=10) for step in range(100)]
    assert values[0] == pytest.approx(0.1)
    assert values[9] == pytest.approx(1.0)
    assert values[10] == pytest.approx(1.0)
    assert values[-1] < 0.01
    assert all(a >= b for a, b in zip(values[10:], values[11:], strict=False))
