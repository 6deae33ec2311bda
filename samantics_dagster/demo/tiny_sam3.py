"""A tiny, randomly initialised SAM3 checkpoint in the real checkpoint's shape, built offline.

The real ``facebook/sam3`` weights are gated (and 3.4 GB), so tests, the demo and the CPU benchmark
need a stand-in that goes through *exactly* the code path real weights use: a folder read back by
``load_sam3`` / ``load_sam3_tracker`` with ``local_files_only=True``. ``facebook/sam3`` is a
``sam3_video`` checkpoint: one ``config.json`` (``Sam3VideoConfig``: a ``detector_config`` and a
``tracker_config``) and one ``model.safetensors`` holding three groups of weights,

* ``detector_model.*``: the concept detector (``Sam3Model``: ViT, FPN neck, text encoder, DETR, masks),
* ``tracker_model.*``: the SAM2-style point/box tracker without a vision encoder (it shares the
  detector's ViT), plus its video memory modules,
* ``tracker_neck.*``: the tracker's own FPN neck over that shared ViT,

and a ``Sam3VideoProcessor`` (image processor, video processor, tokenizer). transformers maps these
names itself when loading: ``Sam3Model`` strips ``detector_model.`` and ignores the rest;
``Sam3TrackerModel`` reads ``detector_model.vision_encoder.backbone.*`` as its backbone,
``tracker_neck.*`` as its neck and ``tracker_model.*`` as itself (the ``sam3_tracker`` entry of
``transformers.conversion_mapping``), and ignores the video memory.

This module writes the same layout at 112 px and hidden size 32 (0.5 M parameters, a few ms per image on
one CPU thread), with a CLIP tokenizer whose vocabulary is the 256 byte symbols (plus their end-of-word
forms) with no merges, so it needs no download and every character is one token. The weights are
written with ``safetensors`` under the module names of ``Sam3VideoModel``, which are the names the
conversion script gives the real checkpoint; ``Sam3VideoModel.save_pretrained`` itself (transformers
5.23.0) would write ``tracker_model.tracker_model.*``, because it applies the tracker's load-time
renaming in reverse on save, and a tracker loaded from that folder misses 147 weights.

Sizes and constraints (measured): the image size must equal the processor's resize target (RoPE
positions are precomputed from it), every head's hidden size must equal ``fpn_hidden_size`` and be
divisible by 8 (``GroupNorm(8, H)``), and ``backbone_config`` must be a config object, not a dict.

A random model scores every query at about sigmoid(0) * sigmoid(0) = 0.25, so nothing would pass a
0.5 threshold. Two knobs, baked into the saved detector weights, make detections appear:
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


def tiny_tracker_config(detector, *, hidden: int = TINY_HIDDEN):
    """The tracker half of the ``sam3_video`` config: a ``Sam3TrackerVideoConfig`` over the detector's
    own vision config (the real checkpoint's tracker shares the detector's ViT and has its own neck of the
    same shape), with every width cut to ``hidden`` and one or two layers of each kind."""
    from transformers.models.sam3_tracker_video.configuration_sam3_tracker_video import Sam3TrackerVideoConfig

    image_size = detector.vision_config.backbone_config.image_size
    return Sam3TrackerVideoConfig(
        vision_config=detector.vision_config.to_dict(),
        prompt_encoder_config=dict(hidden_size=hidden, image_size=image_size, patch_size=14),
        mask_decoder_config=dict(hidden_size=hidden, mlp_dim=2 * hidden, num_hidden_layers=2, num_attention_heads=2,
                                 iou_head_hidden_dim=hidden),
        memory_attention_hidden_size=hidden, memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=2 * hidden, memory_encoder_hidden_size=hidden,
        memory_encoder_output_channels=hidden // 2, mask_downsampler_embed_dim=hidden, memory_fuser_embed_dim=hidden,
        memory_fuser_intermediate_dim=2 * hidden, memory_fuser_num_layers=1,
        image_size=image_size)  # type: ignore[call-arg]  # taken by __post_init__ (sets every sub-config's size)


def build_tiny_sam3(seed: int = 0, *, presence_bias: float | None = 10.0, score_scale: float = 30.0,
                    image_size: int = TINY_IMAGE_SIZE, num_queries: int = TINY_QUERIES):
    """Return ``(model, processor)``: a random ``Sam3VideoModel`` (eval mode, fp32; detector, tracker,
    tracker neck) and its ``Sam3VideoProcessor``.

    Deterministic for ``seed``: the weights are drawn from torch's global RNG seeded inside
    ``fork_rng``, so building a model neither depends on nor disturbs the caller's random stream. The
    detector is drawn first and alone, as a plain ``Sam3Model``, so its weights (and so the scores the
    tests' thresholds are set against) do not depend on the tracker's shape.
    ``presence_bias=None`` and ``score_scale=1`` leave the detector's heads as initialised (scores ~0.25).
    """
    from transformers import Sam3Model, Sam3VideoConfig, Sam3VideoModel, Sam3VideoProcessor
    from transformers.models.sam2_video.video_processing_sam2_video import Sam2VideoVideoProcessor
    from transformers.models.sam3.image_processing_sam3 import Sam3ImageProcessor

    tokenizer = byte_level_clip_tokenizer()
    detector_config = tiny_sam3_config(tokenizer, image_size=image_size, num_queries=num_queries)
    config = Sam3VideoConfig(detector_config=detector_config, tracker_config=tiny_tracker_config(detector_config))
    config.architectures = ["Sam3VideoModel"]  # what the real config.json names
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        detector = Sam3Model(detector_config).eval()
        torch.manual_seed(seed + 1)
        model = Sam3VideoModel(config).eval()
    model.detector_model.load_state_dict(detector.state_dict())
    if presence_bias is not None:
        with torch.no_grad():
            model.detector_model.detr_decoder.presence_head.layer3.bias.fill_(presence_bias)
    if score_scale != 1.0:
        with torch.no_grad():
            model.detector_model.dot_product_scoring.query_proj.weight.mul_(score_scale)
            model.detector_model.dot_product_scoring.query_proj.bias.mul_(score_scale)
    size = {"height": image_size, "width": image_size}
    processor = Sam3VideoProcessor(
        image_processor=Sam3ImageProcessor(size=size),
        video_processor=Sam2VideoVideoProcessor(image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5], size=size),
        tokenizer=tokenizer)
    return model, processor


def save_tiny_sam3(path: Path, seed: int = 0, *, presence_bias: float | None = 10.0, score_scale: float = 30.0,
                   image_size: int = TINY_IMAGE_SIZE, num_queries: int = TINY_QUERIES) -> Path:
    """Build the tiny model and write it as a snapshot folder in ``facebook/sam3``'s layout
    (``config.json`` of model type ``sam3_video``, ``model.safetensors`` with ``detector_model.*``,
    ``tracker_model.*`` and ``tracker_neck.*``, processor and tokenizer files). Returns ``path``."""
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model, processor = build_tiny_sam3(seed, presence_bias=presence_bias, score_scale=score_scale,
                                       image_size=image_size, num_queries=num_queries)
    model.config.save_pretrained(path)
    # The module names are the checkpoint's names (see the module docstring for why not save_pretrained).
    # Clones: safetensors refuses tensors that share storage, and a few of the tracker's do.
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(path / "model.safetensors"), metadata={"format": "pt"})
    processor.save_pretrained(path)
    return path
