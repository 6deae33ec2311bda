"""A tiny, randomly initialised SAM3 checkpoint, built offline.

The real ``facebook/sam3`` weights are gated (and 3.4 GB), so tests, the demo and the CPU benchmark
need a stand-in that goes through *exactly* the code path real weights use: a folder written by
``save_pretrained`` and read back by ``load_sam3`` with ``local_files_only=True``. This module builds
one: a ``Sam3Config`` shrunk to 112 px and hidden size 32 (0.26 M parameters, a few ms per image on
one CPU thread) and a CLIP tokenizer whose vocabulary is the 256 byte symbols (plus their
end-of-word forms) with no merges, so it needs no download and every character is one token.

Sizes and constraints were measured (``../shared/notes/sam3.md`` beside the repository, §2.2-2.3): the image size must equal the
processor's resize target (RoPE positions are precomputed from it), every head's hidden size must
equal ``fpn_hidden_size`` and be divisible by 8 (``GroupNorm(8, H)``), and ``backbone_config`` must be
a config object, not a dict.

A random model scores every query at about sigmoid(0) * sigmoid(0) = 0.25, so nothing would pass a
0.5 threshold. Two knobs, baked into the saved weights, make detections appear:
``presence_bias`` sets the presence head's last bias (+10 saturates the presence factor to ~1,
leaving score = sigmoid(query logit), all within 0.49-0.51 at random init), and ``score_scale``
multiplies the query projection of the dot-product scorer, which spreads those logits (x30 gives
scores of roughly 0.25-0.6), so the pipeline's usual 0.5 threshold keeps some queries and drops others.
"""

from __future__ import annotations

from pathlib import Path

import torch

TINY_IMAGE_SIZE = 112  # must be a multiple of the 14 px patch; the processor resizes to it
TINY_HIDDEN = 32
TINY_QUERIES = 16


def byte_level_clip_tokenizer():
    """A ``CLIPTokenizer`` over the 256 byte symbols, built with no files and no network.

    CLIP's BPE vocabulary is the byte alphabet, each symbol again with the ``</w>`` end-of-word
    suffix, the learned merges, then ``<|startoftext|>`` / ``<|endoftext|>``. Without merges every
    character is one token, which is all a random model needs; a 30-character prompt already fills
    the 32 positions, which is why ``encode_prompts`` truncates.
    """
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    alphabet = sorted(ByteLevel.alphabet())  # the GPT-2/CLIP byte-to-unicode symbols, 256 of them
    tokens = alphabet + [s + "</w>" for s in alphabet] + ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    return CLIPTokenizer(vocab=vocab, merges=[])


def tiny_sam3_config(tokenizer, *, image_size: int = TINY_IMAGE_SIZE, hidden: int = TINY_HIDDEN,
                     num_queries: int = TINY_QUERIES):
    """The smallest ``Sam3Config`` that keeps every code path of the full model (same layer kinds,
    one or two of each); the token ids come from ``tokenizer`` so padding and EOS agree with it."""
    from transformers import Sam3Config
    from transformers.models.sam3.configuration_sam3 import Sam3VisionConfig, Sam3ViTConfig

    patches = image_size // 14
    if patches * 14 != image_size:
        raise ValueError(f"image_size must be a multiple of the 14 px patch, got {image_size}")
    feature_sizes = [[patches * 4, patches * 4], [patches * 2, patches * 2], [patches, patches]]
    return Sam3Config(
        vision_config=Sam3VisionConfig(
            backbone_config=Sam3ViTConfig(
                hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2, num_attention_heads=2,
                image_size=image_size, patch_size=14, window_size=4, global_attn_indexes=[1],
                pretrain_image_size=image_size),
            fpn_hidden_size=hidden, scale_factors=[4.0, 2.0, 1.0, 0.5],
            backbone_feature_sizes=feature_sizes),
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden, projection_dim=hidden,
            num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=32,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id),
        geometry_encoder_config=dict(hidden_size=hidden, num_layers=1, num_attention_heads=2,
                                     intermediate_size=2 * hidden),
        detr_encoder_config=dict(hidden_size=hidden, num_layers=1, num_attention_heads=2,
                                 intermediate_size=2 * hidden),
        detr_decoder_config=dict(hidden_size=hidden, num_layers=1, num_attention_heads=2,
                                 intermediate_size=2 * hidden, num_queries=num_queries),
        mask_decoder_config=dict(hidden_size=hidden, num_upsampling_stages=3, num_attention_heads=2),
    )


def build_tiny_sam3(seed: int = 0, *, presence_bias: float | None = 10.0, score_scale: float = 30.0,
                    image_size: int = TINY_IMAGE_SIZE, num_queries: int = TINY_QUERIES):
    """Return ``(model, processor)``: a random ``Sam3Model`` (eval mode, fp32) and its ``Sam3Processor``.

    Deterministic for ``seed``: the weights are drawn from torch's global RNG seeded inside
    ``fork_rng``, so building a model neither depends on nor disturbs the caller's random stream.
    ``presence_bias=None`` and ``score_scale=1`` leave the heads as initialised (scores ~0.25).
    """
    from transformers import Sam3Model, Sam3Processor
    from transformers.models.sam3.image_processing_sam3 import Sam3ImageProcessor

    tokenizer = byte_level_clip_tokenizer()
    config = tiny_sam3_config(tokenizer, image_size=image_size, num_queries=num_queries)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Sam3Model(config).eval()
    if presence_bias is not None:
        with torch.no_grad():
            model.detr_decoder.presence_head.layer3.bias.fill_(presence_bias)
    if score_scale != 1.0:
        with torch.no_grad():
            model.dot_product_scoring.query_proj.weight.mul_(score_scale)
            model.dot_product_scoring.query_proj.bias.mul_(score_scale)
    processor = Sam3Processor(
        image_processor=Sam3ImageProcessor(size={"height": image_size, "width": image_size}),
        tokenizer=tokenizer)
    return model, processor


def save_tiny_sam3(path: Path, seed: int = 0, *, presence_bias: float | None = 10.0, score_scale: float = 30.0,
                   image_size: int = TINY_IMAGE_SIZE, num_queries: int = TINY_QUERIES) -> Path:
    """Build the tiny model and write it as a snapshot folder (``config.json``, ``model.safetensors``,
    processor and tokenizer files), the same layout as a Hugging Face snapshot of ``facebook/sam3``.
    Returns ``path``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model, processor = build_tiny_sam3(seed, presence_bias=presence_bias, score_scale=score_scale,
                                       image_size=image_size, num_queries=num_queries)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path
