"""``trixai-profile model=...``: efficiency profile of one model, written to ``profile.json`` and printed."""

from __future__ import annotations

from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from trixai.core.files import atomic_write_json
from trixai.training.profiling import profile_model


def profile_table(profile: dict, title: str) -> Table:
    """Rows of a profile dict in human units (M params, GMACs, MB, ms, images/s)."""
    table = Table(title=title)
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_row("parameters", f"{profile['params'] / 1e6:.2f} M")
    table.add_row(f"MACs @ {profile['resolution']} px (FLOPs = 2 × MACs)",
                  f"{profile['macs'] / 1e9:.3f} G ({profile['flops'] / 1e9:.3f} GFLOPs)")
    table.add_row("size fp32 / fp16", f"{profile['size_fp32_bytes'] / 2**20:.1f} / {profile['size_fp16_bytes'] / 2**20:.1f} MiB")
    for batch in profile["batch_sizes"]:
        table.add_row(f"latency / throughput, batch {batch}",
                      f"{profile[f'latency_ms_b{batch}']:.2f} ms / {profile[f'throughput_b{batch}']:.1f} img/s")
    table.add_row(f"peak memory, inference batch {profile['batch_sizes'][-1]}",
                  f"{profile['peak_mem_infer_bytes'] / 2**20:.1f} MiB")
    if "peak_mem_train_bytes" in profile:
        table.add_row(f"peak memory, TRADES-{profile['trades_steps']} step batch {profile['train_batch']}",
                      f"{profile['peak_mem_train_bytes'] / 2**20:.1f} MiB")
    return table


def run_profile(cfg: DictConfig) -> dict:
    """Build ``cfg.model`` with ``cfg.num_classes`` classes, profile it, write ``profile.json`` in the run dir."""
    model = instantiate(cfg.model, num_classes=cfg.num_classes, in_chans=cfg.in_chans)
    profile = profile_model(
        model, resolution=cfg.model.resolution, in_chans=cfg.in_chans, device=cfg.device,
        batch_sizes=list(cfg.batch_sizes), train_batch=cfg.train_batch, warmup=cfg.warmup, repeats=cfg.repeats,
        bf16=cfg.bf16, channels_last=cfg.channels_last, trades_steps=cfg.trades_steps, train_step=cfg.train_step,
    )
    profile = {"model": model.name, "num_classes": cfg.num_classes, **profile,
               "model_config": OmegaConf.to_container(cfg.model, resolve=True)}
    atomic_write_json(Path(cfg.paths.output_dir) / "profile.json", profile)
    Console(width=110).print(profile_table(profile, f"profile: {model.name} on {profile['device']}"))
    return profile
