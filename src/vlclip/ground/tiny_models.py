"""Tiny randomly initialised Grounding DINO and OWLv2 checkpoints, for offline tests and smoke runs.

Each builder writes a folder with ``save_pretrained`` (model and processor), which then loads
through the same ``from_pretrained`` code users run against the hub (``ground.checkpoint``).
The boxes are random: these exercise the code path, not detection quality. Used by the tests and
``bench/grounding_throughput.py``; they need no network.
"""

from __future__ import annotations

import json
import string
import tempfile
from pathlib import Path

WORDS = (
    "soda",
    "can",
    "box",
    "bottle",
    "jar",
    "cereal",
    "tub",
    "bag",
    "a",
    "photo",
    "of",
)
IMAGE_SIDE = 64
TEXT_TOKENS = 16


def build_grounding_dino(folder: Path, seed: int = 0) -> Path:
    """A 1-layer BERT, a Swin with one block per stage, 2 decoder layers (fewer cannot tie)."""
    import torch
    from transformers import (
        BertConfig,
        BertTokenizerFast,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        SwinConfig,
    )

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", *WORDS]
    tokenizer = BertTokenizerFast(vocab={word: index for index, word in enumerate(vocab)})
    image_processor = GroundingDinoImageProcessor(
        size={"shortest_edge": IMAGE_SIDE, "longest_edge": IMAGE_SIDE * 3 // 2}
    )
    config = GroundingDinoConfig(
        backbone_config=SwinConfig(
            embed_dim=24,
            depths=[1, 1, 1, 1],
            num_heads=[1, 1, 1, 1],
            window_size=4,
            image_size=IMAGE_SIDE,
            out_features=["stage2", "stage3", "stage4"],
        ),
        text_config=BertConfig(
            vocab_size=len(vocab),
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=37,
        ),
        d_model=32,
        encoder_layers=1,
        decoder_layers=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        num_queries=10,
        num_feature_levels=3,
        max_text_len=TEXT_TOKENS,
        encoder_n_points=2,
        decoder_n_points=2,
    )
    torch.manual_seed(seed)
    GroundingDinoForObjectDetection(config).save_pretrained(folder)
    GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(
        folder
    )
    return folder


def build_owlv2(folder: Path, seed: int = 0) -> Path:
    """A 1-layer CLIP text and vision tower; the tokenizer spells words letter by letter.

    OWL marks padded queries by a first token id of 0, so the special tokens come last in the
    vocabulary (as in CLIP's own).
    """
    import torch
    from transformers import (
        CLIPTokenizer,
        Owlv2Config,
        Owlv2ForObjectDetection,
        Owlv2ImageProcessor,
        Owlv2Processor,
    )

    letters = list(string.ascii_lowercase)
    vocab = {token: index for index, token in enumerate(letters + [f"{c}</w>" for c in letters])}
    start, end = len(vocab), len(vocab) + 1
    vocab.update({"<|startoftext|>": start, "<|endoftext|>": end})
    with tempfile.TemporaryDirectory() as source:
        vocab_file, merges_file = Path(source) / "vocab.json", Path(source) / "merges.txt"
        vocab_file.write_text(json.dumps(vocab))
        merges_file.write_text("#version: 0.2\n")  # no merges: words are spelled out
        tokenizer = CLIPTokenizer(
            vocab=str(vocab_file), merges=str(merges_file), model_max_length=TEXT_TOKENS
        )
    image_processor = Owlv2ImageProcessor(size={"height": IMAGE_SIDE, "width": IMAGE_SIDE})
    config = Owlv2Config(
        text_config={
            "vocab_size": len(vocab),
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "max_position_embeddings": TEXT_TOKENS,
            "bos_token_id": start,
            "eos_token_id": end,
            "pad_token_id": end,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": IMAGE_SIDE,
            "patch_size": 16,
        },
        projection_dim=32,
    )
    torch.manual_seed(seed)
    Owlv2ForObjectDetection(config).save_pretrained(folder)
    Owlv2Processor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder
