#!/usr/bin/python3
"""The peer for bench_train_step: the same GPT-2 model, batch and optimizer in PyTorch (Debian's
python3-torch on the CPU; any PyTorch with CUDA on a GPU machine), timed the same way (median ms
of a training step after warm-up).

usage: python3 bench/torch_gpt.py [--profile] MODEL.yaml B T THREADS [STEPS] [WARMUP] [DEVICE]
                                  [PRECISION]

DEVICE is cpu (default) or cuda (cuda:N). PRECISION is what xdt's --precision means, done the
way a PyTorch user does it: fp32 (TF32 off, as xdt's default), tf32 (TF32 matmuls allowed), bf16
(autocast to bfloat16 around the forward; fp32 parameters, gradients and optimizer). On CUDA the
attention is torch's scaled_dot_product_attention and the optimizer the fused AdamW (both as
nanoGPT uses them) where the PyTorch version has them: the peer a user would actually run, not a
copy of xdt's kernels. TORCH_GPT_ADAMW=default times PyTorch's default AdamW instead.

--profile: after the timed steps, two more run under torch.profiler and the kernels that took the
most device time (CPU time on the CPU) are printed after the JSON line, to set beside
`bench_train_step --profile`'s table of xdt's ops."""
import inspect
import json
import math
import os
import resource
import statistics
import sys
import time

PROFILE = len(sys.argv) > 1 and sys.argv[1] == "--profile"
if PROFILE:
    del sys.argv[1]

# Debian's torch calls OpenBLAS (pthreads) for GEMMs, which starts one thread per core unless
# told otherwise; torch.set_num_threads only sets OpenMP's. Hold both to THREADS, as xdt does, so
# the comparison is at the same thread count. Must happen before OpenBLAS loads.
if len(sys.argv) > 4:
    os.environ["OPENBLAS_NUM_THREADS"] = sys.argv[4]

import torch
import torch.nn as nn
import torch.nn.functional as F


def read_config(path):
    cfg = {}
    for line in open(path):
        line = line.split("#", 1)[0].strip()
        if ":" in line:
            k, v = (s.strip() for s in line.split(":", 1))
            cfg[k] = v
    return cfg


class Block(nn.Module):
    def __init__(self, c, nh):
        super().__init__()
        self.nh = nh
        self.ln1, self.ln2 = nn.LayerNorm(c), nn.LayerNorm(c)
        self.qkv, self.proj = nn.Linear(c, 3 * c), nn.Linear(c, c)
        self.fc, self.fcproj = nn.Linear(c, 4 * c), nn.Linear(4 * c, c)

    def forward(self, x, mask, fused):
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.nh, c // self.nh).transpose(1, 2) for z in (q, k, v))
        if fused:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
            att = F.softmax(att.masked_fill(mask[:, :, :t, :t] == 0, float("-inf")), dim=-1)
            y = att @ v
        y = y.transpose(1, 2).contiguous().view(b, t, c)
        x = x + self.proj(y)
        return x + self.fcproj(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, vp, max_t, n_layer, nh, c, fused):
        super().__init__()
        self.fused = fused
        self.wte, self.wpe = nn.Embedding(vp, c), nn.Embedding(max_t, c)
        self.blocks = nn.ModuleList(Block(c, nh) for _ in range(n_layer))
        self.lnf = nn.LayerNorm(c)
        self.register_buffer("mask", torch.tril(torch.ones(max_t, max_t)).view(1, 1, max_t, max_t))

    def forward(self, idx, targets):
        t = idx.size(1)
        x = self.wte(idx) + self.wpe(torch.arange(t, device=idx.device))
        for blk in self.blocks:
            x = blk(x, self.mask, self.fused)
        logits = F.linear(self.lnf(x), self.wte.weight)  # tied LM head
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def main():
    cfg = read_config(sys.argv[1])
    b, t, threads = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    steps = int(sys.argv[5]) if len(sys.argv) > 5 else 10
    warmup = int(sys.argv[6]) if len(sys.argv) > 6 else 3
    device = torch.device(sys.argv[7] if len(sys.argv) > 7 else "cpu")
    precision = sys.argv[8] if len(sys.argv) > 8 else "fp32"
    if precision not in ("fp32", "tf32", "bf16"):
        sys.exit(f"torch_gpt.py: precision {precision}: expected fp32, tf32 or bf16")
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
        torch.backends.cudnn.allow_tf32 = precision == "tf32"
    fused = cuda and hasattr(F, "scaled_dot_product_attention")
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    v = int(cfg["vocab_size"])
    vp = int(cfg.get("padded_vocab_size", v))
    model = GPT(vp, int(cfg["max_seq_len"]), int(cfg["n_layer"]), int(cfg["n_head"]),
                int(cfg["n_embd"]), fused)
    for m in model.modules():  # GPT-2 initialisation, as xdt does
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        if isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)
    model.to(device)  # before the optimizer: a fused AdamW checks its tensors' device
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    # On CUDA the fused AdamW (one kernel for all tensors), as nanoGPT picks it: the fastest
    # optimizer step PyTorch offers. TORCH_GPT_ADAMW=default times PyTorch's default instead.
    has_fused = "fused" in inspect.signature(torch.optim.AdamW).parameters  # PyTorch 2.0 on
    adamw = os.environ.get("TORCH_GPT_ADAMW", "fused" if cuda and has_fused else "default")
    if adamw not in ("fused", "default"):
        sys.exit(f"torch_gpt.py: TORCH_GPT_ADAMW={adamw}: expected fused or default")
    if adamw == "fused" and not (cuda and has_fused):
        sys.exit("torch_gpt.py: TORCH_GPT_ADAMW=fused needs a CUDA device and PyTorch 2.0 or later")
    groups = [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}]
    hyper = dict(lr=1e-4, betas=(0.9, 0.95), eps=1e-8)
    opt = (torch.optim.AdamW(groups, fused=True, **hyper) if adamw == "fused"
           else torch.optim.AdamW(groups, **hyper))
    x = torch.randint(0, v, (b, t), device=device)
    y = torch.randint(0, v, (b, t), device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    def step():
        opt.zero_grad(set_to_none=True)
        with autocast:
            loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if cuda:
            torch.cuda.synchronize(device)
        return loss

    times = []
    for s in range(warmup + steps):
        t0 = time.perf_counter()
        loss = step()
        if s >= warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    ms = statistics.median(times)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"impl": "pytorch", "torch": torch.__version__, "device": str(device),
                      "precision": precision, "attention": "sdpa" if fused else "explicit",
                      "adamw": adamw, "model": cfg["name"], "B": b,
                      "T": t, "threads": threads, "steps": steps, "ms_per_step": round(ms, 3),
                      "tokens_per_s": round(b * t / (ms / 1e3), 1), "peak_rss_mib": round(rss, 1),
                      "loss": round(loss.item(), 4)}))
    if PROFILE:
        print_profile(step, cuda, f"pytorch {cfg['name']} {precision} B={b} T={t}, 2 steps")


def print_profile(step, cuda, title):
    """Two steps under torch.profiler; the kernels by device time, the longest first."""
    from torch.profiler import ProfilerActivity, profile
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=acts) as prof:
        for _ in range(2):
            step()
    print(title)
    averages = prof.key_averages()
    for key in (("self_device_time_total", "self_cuda_time_total") if cuda
                else ("self_cpu_time_total",)):
        try:
            print(averages.table(sort_by=key, row_limit=30))
            return
        except (AttributeError, KeyError, ValueError):
            continue
    print(averages.table(row_limit=30))


if __name__ == "__main__":
    main()
