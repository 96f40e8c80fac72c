"""Tiny random-weight Wan2.2 pipelines of the real architectures, built offline.

Each builder makes the same components, with the same classes and wiring, as the published
``Wan-AI/Wan2.2-*-Diffusers`` repositories, only with very small widths, and saves them with
``save_pretrained`` so that the production loader (``generation.backends.wan.load_pipeline``)
reads them from disk exactly as it reads the real weights:

- T2V-A14B: two experts (high noise ``transformer``, low noise ``transformer_2``),
  ``boundary_ratio`` 0.875, 16 latent channels in and out, the Wan2.1 VAE (z=16, 8x spatial,
  channel multipliers 1-2-4-4 as in the real one).
- I2V-A14B: two experts, ``boundary_ratio`` 0.9, 36 channels in (16 noise + 4 mask + 16 image
  condition), 16 out, no CLIP image encoder (Wan2.2 dropped it), the Wan2.1 VAE.
- TI2V-5B: one expert with ``expand_timesteps`` (per-token timesteps, first frame clean in
  image-to-video), 48 channels in and out, the Wan2.2 VAE (z=48, patch 2, residual blocks, 16x,
  a decoder wider than the encoder as in the real one).
- Wan2.2-VACE-Fun-A14B: ``WanVACEPipeline`` with two ``WanVACETransformer3DModel`` experts
  (``boundary_ratio`` 0.875, as diffusers' convert_wan_to_diffusers.py writes for
  "Wan2.2-VACE-Fun-14B"), VACE blocks on a subset of the layers fed by 96 control channels
  (16 inactive + 16 reactive latent channels + 64 for the 8x8 mask), the Wan2.1 VAE.
- Wan2.1-VACE-14B: the same with one expert and no boundary.

The tokenizer is a Unigram model trained in memory with ``tokenizers`` (pad 0, end 1, unknown 2,
as umt5) and the text encoder a ``UMT5EncoderModel`` from a tiny config: nothing is downloaded.
The schedulers carry what the converted repositories carry (UniPC, flow prediction, flow sigmas,
shift 3.0 for the A14B repos and 5.0 for TI2V-5B), so that the loader's own flow-shift override
is what a test sees. Construction is deterministic: every weight is drawn after a fixed seed.

torch, diffusers and transformers are imported inside the functions, so importing this module is
cheap.
"""

from __future__ import annotations

import json
from pathlib import Path

SEED = 20250728

# Widths from the notes (checked on this machine): 2 heads x 12, 2 layers, feed-forward 32,
# text dimension 32, RMS norm across heads, patch (1, 2, 2).
TRANSFORMER_KWARGS = {
    "patch_size": (1, 2, 2),
    "num_attention_heads": 2,
    "attention_head_dim": 12,
    "text_dim": 32,
    "freq_dim": 256,
    "ffn_dim": 32,
    "num_layers": 2,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "eps": 1e-6,
    "rope_max_seq_len": 32,
}

TEXT_WIDTH = 32

_TEXT = (
    "a an the of and in on with at to from by under over near young old little big "
    "student students school class teacher teachers lesson moral kindness honesty courage "
    "share sharing help helps helping friend friends family mother father sister brother "
    "shop store coat jacket dress shoes hat street road new york city park garden beach "
    "video film scene shot camera pans slowly close up wide portrait cinematic light "
    "red blue green yellow white black golden warm soft bright sunny rainy snowy night "
    "day morning evening girl boy woman man dog cat bird walks runs smiles laughs waves "
    "reads writes sings dances sits stands looks turns holds gives takes opens "
    "A The In On With Student Teacher New York Wan low quality blurry static"
)


def _corpus() -> list[str]:
    words = _TEXT.split()
    return [" ".join(words[i:] + words[:i]) for i in range(len(words))]


def build_tokenizer():
    """A umt5-shaped tokenizer (``T5Tokenizer``, Unigram) trained in memory on a fixed corpus."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import T5Tokenizer

    unigram = Tokenizer(models.Unigram())
    unigram.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(
        vocab_size=256,
        special_tokens=["<pad>", "</s>", "<unk>"],
        unk_token="<unk>",
        show_progress=False,
    )
    unigram.train_from_iterator(_corpus(), trainer)
    # The trainer's output order and the last digits of its scores change from run to run (hash
    # map order in the Rust trainer, even on one thread); the pieces and their rounded scores do
    # not. Sorting by rounded score then piece makes the token ids, and so the text embeddings,
    # the same on every build.
    specials = ["<pad>", "</s>", "<unk>"]
    trained = json.loads(unigram.to_str())["model"]["vocab"]
    pieces = sorted(
        ((piece, round(float(score), 6)) for piece, score in trained if piece not in specials),
        key=lambda item: (-item[1], item[0]),
    )
    vocab = [(piece, 0.0) for piece in specials] + pieces
    tokenizer = T5Tokenizer(vocab=vocab, extra_ids=0)
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (0, 1, 2)
    return tokenizer


def build_text_encoder(vocab_size: int):
    import torch
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(SEED)
    config = UMT5Config(
        vocab_size=vocab_size,
        d_model=TEXT_WIDTH,
        d_kv=16,
        d_ff=64,
        num_layers=2,
        num_heads=2,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=32,
        dropout_rate=0.0,
        feed_forward_proj="gated-gelu",
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    return UMT5EncoderModel(config).eval()


def build_vae_wan21():
    """The Wan2.1 VAE used by both A14B models: z=16, 8x spatial, 4x temporal."""
    import torch
    from diffusers import AutoencoderKLWan

    torch.manual_seed(SEED + 1)
    return AutoencoderKLWan(
        base_dim=2,
        z_dim=16,
        dim_mult=[1, 2, 4, 4],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
    ).eval()


def build_vae_wan22():
    """The Wan2.2 VAE of TI2V-5B: z=48, patch 2, residual blocks, 16x spatial, 4x temporal."""
    import torch
    from diffusers import AutoencoderKLWan

    torch.manual_seed(SEED + 2)
    return AutoencoderKLWan(
        base_dim=2,
        decoder_base_dim=4,
        z_dim=48,
        in_channels=12,
        out_channels=12,
        is_residual=True,
        patch_size=2,
        latents_mean=[0.0] * 48,
        latents_std=[1.0] * 48,
        dim_mult=[1, 2, 4, 4],
        num_res_blocks=1,
        scale_factor_spatial=16,
        scale_factor_temporal=4,
        temperal_downsample=[False, True, True],
    ).eval()


def build_transformer(*, in_channels: int, out_channels: int, seed_offset: int):
    import torch
    from diffusers import WanTransformer3DModel

    torch.manual_seed(SEED + 10 + seed_offset)
    return WanTransformer3DModel(
        in_channels=in_channels, out_channels=out_channels, **TRANSFORMER_KWARGS
    ).eval()


def build_scheduler(flow_shift: float):
    from diffusers import UniPCMultistepScheduler

    return UniPCMultistepScheduler(
        prediction_type="flow_prediction",
        use_flow_sigmas=True,
        num_train_timesteps=1000,
        flow_shift=flow_shift,
    )


def _text_parts():
    tokenizer = build_tokenizer()
    return tokenizer, build_text_encoder(len(tokenizer))


def build_t2v_a14b(directory: str | Path) -> Path:
    """Two-expert text-to-video (boundary 0.875), saved under ``directory``."""
    from diffusers import WanPipeline

    tokenizer, text_encoder = _text_parts()
    pipe = WanPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=build_vae_wan21(),
        scheduler=build_scheduler(3.0),
        transformer=build_transformer(in_channels=16, out_channels=16, seed_offset=0),
        transformer_2=build_transformer(in_channels=16, out_channels=16, seed_offset=1),
        boundary_ratio=0.875,
    )
    return _save(pipe, directory)


def build_i2v_a14b(directory: str | Path) -> Path:
    """Two-expert image-to-video (boundary 0.9), no image encoder, saved under ``directory``."""
    from diffusers import WanImageToVideoPipeline

    tokenizer, text_encoder = _text_parts()
    pipe = WanImageToVideoPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=build_vae_wan21(),
        scheduler=build_scheduler(3.0),
        image_processor=None,
        image_encoder=None,
        transformer=build_transformer(in_channels=36, out_channels=16, seed_offset=2),
        transformer_2=build_transformer(in_channels=36, out_channels=16, seed_offset=3),
        boundary_ratio=0.9,
    )
    return _save(pipe, directory)


def build_ti2v_5b(directory: str | Path) -> Path:
    """One-expert text-and-image-to-video with per-token timesteps, saved under ``directory``.

    Saved as a ``WanPipeline``; the same directory loads as ``WanImageToVideoPipeline`` too.
    """
    from diffusers import WanPipeline

    tokenizer, text_encoder = _text_parts()
    pipe = WanPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=build_vae_wan22(),
        scheduler=build_scheduler(5.0),
        transformer=build_transformer(in_channels=48, out_channels=48, seed_offset=4),
        transformer_2=None,
        boundary_ratio=None,
        expand_timesteps=True,
    )
    return _save(pipe, directory)


# The real VACE models put a VACE block on every 5th (14B) or every 2nd (1.3B) layer, layer 0
# always included; the tiny one has four layers and VACE blocks on layers 0 and 2.
VACE_LAYERS = [0, 2]


def build_vace_transformer(*, seed_offset: int):
    import torch
    from diffusers import WanVACETransformer3DModel

    torch.manual_seed(SEED + 10 + seed_offset)
    return WanVACETransformer3DModel(
        in_channels=16,
        out_channels=16,
        vace_layers=VACE_LAYERS,
        vace_in_channels=96,
        **{**TRANSFORMER_KWARGS, "num_layers": 4},
    ).eval()


def build_vace(directory: str | Path) -> Path:
    """Two-expert VACE (Wan2.2-VACE-Fun-A14B form, boundary 0.875), saved under ``directory``."""
    from diffusers import WanVACEPipeline

    tokenizer, text_encoder = _text_parts()
    pipe = WanVACEPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=build_vae_wan21(),
        scheduler=build_scheduler(3.0),
        transformer=build_vace_transformer(seed_offset=5),
        transformer_2=build_vace_transformer(seed_offset=6),
        boundary_ratio=0.875,
    )
    return _save(pipe, directory)


def build_vace_single(directory: str | Path) -> Path:
    """One-expert VACE (Wan2.1-VACE-14B form), saved under ``directory``."""
    from diffusers import WanVACEPipeline

    tokenizer, text_encoder = _text_parts()
    pipe = WanVACEPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=build_vae_wan21(),
        scheduler=build_scheduler(3.0),
        transformer=build_vace_transformer(seed_offset=7),
        transformer_2=None,
        boundary_ratio=None,
    )
    return _save(pipe, directory)


def _save(pipe, directory: str | Path) -> Path:
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(str(path), safe_serialization=True)
    return path


BUILDERS = {
    "wan2.2-t2v-a14b": build_t2v_a14b,
    "wan2.2-i2v-a14b": build_i2v_a14b,
    "wan2.2-ti2v-5b": build_ti2v_5b,
    "wan2.2-vace-fun-a14b": build_vace,
    "wan2.1-vace-14b": build_vace_single,
}


def build_all(root: str | Path) -> dict[str, Path]:
    """Build every tiny Wan model under ``root/<registry name>``; returns name -> directory."""
    root = Path(root)
    return {name: builder(root / name) for name, builder in BUILDERS.items()}


def build_tiny_lora(
    directory: str | Path,
    *,
    in_channels: int,
    weight_name: str = "tiny_lora.safetensors",
    key_format: str = "diffusers",
    rank: int = 4,
    seed: int = 7,
) -> Path:
    """A LoRA for the tiny transformer's attention projections; returns the file's path.

    ``key_format`` "diffusers" writes peft keys (``transformer.blocks.0.attn1.to_q.lora_A``);
    "wan" writes the original Wan / LightX2V keys (``diffusion_model.blocks.0.self_attn.q.
    lora_down`` with an alpha), which diffusers converts when it loads them. LoRA B matrices
    are drawn at random instead of zero, so that the adapter changes the output. Needs ``peft``.
    """
    import torch
    from diffusers import WanPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    out_channels = 48 if in_channels == 48 else 16
    transformer = build_transformer(
        in_channels=in_channels, out_channels=out_channels, seed_offset=0
    )
    transformer.add_adapter(
        LoraConfig(
            r=rank,
            lora_alpha=rank,
            init_lora_weights=True,
            target_modules=["to_q", "to_k", "to_v", "to_out.0"],
        )
    )
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in transformer.named_parameters():
            if "lora_" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    state_dict = get_peft_model_state_dict(transformer)
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    if key_format == "diffusers":
        WanPipeline.save_lora_weights(
            str(path), transformer_lora_layers=state_dict, weight_name=weight_name
        )
    elif key_format == "wan":
        save_file(_to_wan_lora_keys(state_dict, rank), str(path / weight_name))
    else:
        raise ValueError(f"unknown key_format {key_format!r}")
    return path / weight_name


_WAN_ATTENTION = {"attn1": "self_attn", "attn2": "cross_attn"}
_WAN_PROJECTION = {"to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "o"}


def _to_wan_lora_keys(state_dict: dict, rank: int) -> dict:
    import torch

    converted = {}
    for key, tensor in state_dict.items():
        # blocks.{i}.attn1.to_q.lora_A.weight -> diffusion_model.blocks.{i}.self_attn.q.lora_down.weight
        head, direction, _ = key.rsplit(".", 2)
        parts = head.split(".")
        block, attention, projection = parts[1], parts[2], ".".join(parts[3:])
        base = f"diffusion_model.blocks.{block}.{_WAN_ATTENTION[attention]}.{_WAN_PROJECTION[projection]}"
        name = "lora_down" if direction == "lora_A" else "lora_up"
        converted[f"{base}.{name}.weight"] = tensor.contiguous()
        converted[f"{base}.alpha"] = torch.tensor(float(rank))
    return converted
