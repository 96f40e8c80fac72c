"""Seconds per denoising step of full-size Wan2.2 transformers at 720p, against the FLOP floor.

Builds the real architecture with random bf16 weights directly on the GPU (nothing is
downloaded), then times what the sampler does per step: two transformer passes (classifier-free
guidance: conditional and unconditional) on a 720p, 5 s latent, exactly as shaped by
``WanPipeline``. It then times the VAE decode of that latent (float32 VAE, as the backend loads
it) and reports peak GPU memory.

    --model ti2v-5b   TI2V-5B, 1280x704, 121 frames (24 fps): 31x44x80 latent, 27,280 tokens
    --model a14b      one A14B expert (both are the same shape and one runs per step),
                      1280x720, 81 frames (16 fps): 21x90x160 latent, 75,600 tokens

The FLOP floor counts the transformer's matrix products and attention from its config and the
token count (patch embedding, 512 text tokens, per-layer self-attention, cross-attention and
feed-forward, output projection) and divides by the GPU's dense bf16 peak: TI2V-5B needs
1.03 PFLOP per step with guidance, 1.05 s on an H100 (989 TFLOP/s).

    .venv/bin/python bench/gpu_step.py [--model ti2v-5b|a14b] [--steps 5] [--attention NAME]
                                       [--compile] [--skip-vae]

Headline (last line): ``model=... s_per_step=... ratio_to_flop_floor=... vae_decode_s=...
peak_gb=...``. Without a CUDA device it prints the FLOP floor, says it needs a GPU, exits 0.
``--smoke`` runs the same code at toy sizes on any device to check the script (figures
meaningless).
"""

from __future__ import annotations

import argparse
import sys
import time

TEXT_TOKENS = 512
TEXT_DIM = 4096

MODELS = {
    "ti2v-5b": {
        "title": "Wan2.2 TI2V-5B",
        "transformer": {
            "patch_size": (1, 2, 2),
            "num_attention_heads": 24,
            "attention_head_dim": 128,
            "in_channels": 48,
            "out_channels": 48,
            "text_dim": TEXT_DIM,
            "freq_dim": 256,
            "ffn_dim": 14336,
            "num_layers": 30,
            "cross_attn_norm": True,
            "qk_norm": "rms_norm_across_heads",
            "eps": 1e-6,
            "rope_max_seq_len": 1024,
        },
        "vae": {
            "base_dim": 160,
            "decoder_base_dim": 256,
            "z_dim": 48,
            "dim_mult": [1, 2, 4, 4],
            "num_res_blocks": 2,
            "temperal_downsample": [False, True, True],
            "is_residual": True,
            "in_channels": 12,
            "out_channels": 12,
            "patch_size": 2,
            "scale_factor_spatial": 16,
            "scale_factor_temporal": 4,
            "latents_mean": [0.0] * 48,
            "latents_std": [1.0] * 48,
        },
        "width": 1280,
        "height": 704,
        "frames": 121,
        "vae_spatial": 16,
        "expand_timesteps": True,
        "steps": 50,
    },
    "a14b": {
        "title": "Wan2.2 T2V-A14B (one expert)",
        "transformer": {
            "patch_size": (1, 2, 2),
            "num_attention_heads": 40,
            "attention_head_dim": 128,
            "in_channels": 16,
            "out_channels": 16,
            "text_dim": TEXT_DIM,
            "freq_dim": 256,
            "ffn_dim": 13824,
            "num_layers": 40,
            "cross_attn_norm": True,
            "qk_norm": "rms_norm_across_heads",
            "eps": 1e-6,
            "rope_max_seq_len": 1024,
        },
        "vae": {  # the Wan2.1 VAE: diffusers' AutoencoderKLWan defaults
            "base_dim": 96,
            "z_dim": 16,
            "dim_mult": [1, 2, 4, 4],
            "num_res_blocks": 2,
            "temperal_downsample": [False, True, True],
        },
        "width": 1280,
        "height": 720,
        "frames": 81,
        "vae_spatial": 8,
        "expand_timesteps": False,
        "steps": 40,
    },
}

SMOKE = {
    "transformer": {"num_attention_heads": 2, "attention_head_dim": 16, "ffn_dim": 64,
                    "num_layers": 2, "text_dim": 64},
    "vae": {"base_dim": 4, "decoder_base_dim": None, "num_res_blocks": 1},
    "width": 128, "height": 64, "frames": 9, "text_tokens": 16,
}  # fmt: skip

# Dense bf16 tensor-core peaks (no sparsity), TFLOP/s.
PEAK_BF16_TFLOPS = (
    ("h200", 989.0),
    ("h100", 989.0),
    ("h800", 989.0),
    ("b200", 2250.0),
    ("a100", 312.0),
    ("l40s", 362.0),
    ("a10g", 125.0),
    ("l4", 121.0),
)


def latent_shape(model: dict) -> tuple[int, int, int, int]:
    """(channels, frames, height, width) of the latent WanPipeline samples."""
    frames = (model["frames"] - 1) // 4 + 1
    return (
        model["transformer"]["in_channels"],
        frames,
        model["height"] // model["vae_spatial"],
        model["width"] // model["vae_spatial"],
    )


def transformer_flops(config: dict, latent: tuple[int, int, int, int], text_tokens: int) -> float:
    """FLOPs of one transformer forward pass (multiply-add = 2 FLOPs)."""
    channels, frames, height, width = latent
    pt, ph, pw = config["patch_size"]
    tokens = (frames // pt) * (height // ph) * (width // pw)
    dim = config["num_attention_heads"] * config["attention_head_dim"]
    ffn = config["ffn_dim"]
    per_layer = (
        4 * 2 * tokens * dim * dim  # self-attention q, k, v, o
        + 2 * 2 * tokens * tokens * dim  # scores and weighted sum
        + 2 * 2 * tokens * dim * dim  # cross-attention q, o
        + 2 * 2 * text_tokens * dim * dim  # cross-attention k, v (text tokens)
        + 2 * 2 * tokens * text_tokens * dim  # cross-attention scores and weighted sum
        + 2 * 2 * tokens * dim * ffn  # feed-forward up and down
    )
    patch = pt * ph * pw
    edges = (
        2 * tokens * channels * patch * dim  # patch embedding
        + 2 * text_tokens * (config["text_dim"] * dim + dim * dim)  # text embedding
        + 2 * tokens * dim * config["out_channels"] * patch  # output projection
    )
    return config["num_layers"] * per_layer + edges


def peak_tflops(name: str) -> float | None:
    lowered = name.lower()
    for token, tflops in PEAK_BF16_TFLOPS:
        if token in lowered:
            return tflops
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="ti2v-5b")
    parser.add_argument("--steps", type=int, default=0, help="timed steps (default 5; A14B 3)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--attention", default="", help="diffusers attention backend name")
    parser.add_argument("--compile", action="store_true", help="torch.compile repeated blocks")
    parser.add_argument("--skip-vae", action="store_true")
    parser.add_argument("--peak-tflops", type=float, default=0.0, help="override the GPU peak")
    parser.add_argument("--smoke", action="store_true", help="toy sizes on any device")
    args = parser.parse_args()

    model = {**MODELS[args.model], "transformer": dict(MODELS[args.model]["transformer"])}
    model["vae"] = dict(model["vae"])
    text_tokens = TEXT_TOKENS
    if args.smoke:
        model["transformer"].update(SMOKE["transformer"])
        model["vae"].update(SMOKE["vae"])
        model.update(width=SMOKE["width"], height=SMOKE["height"], frames=SMOKE["frames"])
        text_tokens = SMOKE["text_tokens"]
    latent = latent_shape(model)
    flops_per_step = 2 * transformer_flops(model["transformer"], latent, text_tokens)
    tokens = latent[1] * (latent[2] // 2) * (latent[3] // 2)
    print(
        f"{model['title']}: {model['width']}x{model['height']}, {model['frames']} frames -> "
        f"latent {latent}, {tokens} tokens, {text_tokens} text tokens"
    )
    print(f"FLOPs per step with guidance (2 passes): {flops_per_step / 1e15:.3f} PFLOP")

    import torch

    if not torch.cuda.is_available() and not args.smoke:
        floor = flops_per_step / 989e12
        print(f"FLOP floor on an H100 (989 TFLOP/s bf16): {floor:.3f} s/step")
        print("gpu_step needs a CUDA GPU and none was found; nothing was timed.")
        print(f"model={args.model} skipped=no_cuda_device flop_floor_s_per_step_h100={floor:.3f}")
        return

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    gpu_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = args.peak_tflops or peak_tflops(gpu_name) or 989.0
    floor = flops_per_step / (peak * 1e12)
    print(f"device: {gpu_name}, bf16 peak {peak:.0f} TFLOP/s -> floor {floor:.3f} s/step")
    steps = args.steps or (3 if args.model == "a14b" else 5)

    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    transformer = build_transformer(torch, WanTransformer3DModel, model["transformer"], device)
    if args.attention:
        transformer.set_attention_backend(args.attention)
    if args.compile:
        transformer.compile_repeated_blocks(fullgraph=True)
    weights_gb = sum(p.numel() * p.element_size() for p in transformer.parameters()) / 1024**3
    print(f"transformer weights: {weights_gb:.1f} GiB")

    generator = torch.Generator(device).manual_seed(0)
    dtype = torch.bfloat16
    latents = torch.randn((1, *latent), generator=generator, device=device, dtype=torch.float32)
    text_dim = model["transformer"]["text_dim"]
    cond = torch.randn(
        (1, text_tokens, text_dim), generator=generator, device=device, dtype=torch.float32
    ).to(dtype)
    uncond = torch.randn_like(cond)

    def step(t: float) -> None:
        nonlocal latents
        timestep = torch.full((1,), t, device=device)
        if model["expand_timesteps"]:
            # WanPipeline's per-token timesteps for TI2V-5B: one value per latent patch.
            timestep = timestep.expand(1, tokens)
        hidden = latents.to(dtype)
        noise_cond = transformer(
            hidden_states=hidden, timestep=timestep, encoder_hidden_states=cond, return_dict=False
        )[0]
        noise_uncond = transformer(
            hidden_states=hidden, timestep=timestep, encoder_hidden_states=uncond, return_dict=False
        )[0]
        noise = noise_uncond + 5.0 * (noise_cond - noise_uncond)
        latents = latents - 0.02 * noise.float()

    with torch.inference_mode():
        for index in range(args.warmup):
            step(999.0 - index)
        synchronize(torch, device)
        started = time.perf_counter()
        for index in range(steps):
            step(900.0 - index * 10)
        synchronize(torch, device)
    s_per_step = (time.perf_counter() - started) / steps
    step_peak_gb = peak_gb(torch, device)
    print(f"{steps} steps: {s_per_step:.3f} s/step, {s_per_step / floor:.2f}x the FLOP floor")
    print(f"  -> {model['steps']} steps: {s_per_step * model['steps']:.0f} s of sampling")
    print(f"peak memory while sampling: {step_peak_gb:.1f} GiB")

    vae_decode_s = 0.0
    if not args.skip_vae:
        # The transformer leaves the GPU before the decode, as with model offload.
        del transformer
        if device.type == "cuda":
            torch.cuda.empty_cache()
        torch.manual_seed(0)
        with torch.device(device):
            vae = AutoencoderKLWan(**model["vae"]).eval()
        z = torch.randn((1, model["vae"]["z_dim"], *latent[1:]), generator=generator, device=device)
        with torch.inference_mode():
            synchronize(torch, device)
            started = time.perf_counter()
            video = vae.decode(z, return_dict=False)[0]
            synchronize(torch, device)
        vae_decode_s = time.perf_counter() - started
        print(f"VAE decode (float32) to {tuple(video.shape)}: {vae_decode_s:.2f} s")
    total_peak_gb = peak_gb(torch, device)
    print(f"peak memory overall: {total_peak_gb:.1f} GiB")
    print(
        f"model={args.model} s_per_step={s_per_step:.3f} "
        f"ratio_to_flop_floor={s_per_step / floor:.2f} vae_decode_s={vae_decode_s:.2f} "
        f"peak_gb={total_peak_gb:.1f}"
    )


def build_transformer(torch, transformer_class, config: dict, device):
    """Random weights made on the device in bf16; the modules diffusers keeps in float32 when it
    loads the real weights (time embedding, modulation tables, norms) are made float32 too."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        torch.manual_seed(0)
        with torch.device(device):
            transformer = transformer_class(**config)
    finally:
        torch.set_default_dtype(previous)
    # The same rule as diffusers' loader: a parameter stays float32 when one of the parts of its
    # dotted name is listed in ``_keep_in_fp32_modules``.
    keep = set(getattr(transformer_class, "_keep_in_fp32_modules", None) or ())
    for name, parameter in transformer.named_parameters():
        if keep.intersection(name.split(".")):
            parameter.data = parameter.data.float()
    return transformer.eval().requires_grad_(False)


def synchronize(torch, device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_gb(torch, device) -> float:
    if device.type != "cuda":
        return 0.0
    return torch.cuda.max_memory_allocated(device) / 1024**3


if __name__ == "__main__":
    sys.exit(main())
