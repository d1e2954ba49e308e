"""The GPU bench's core figures alone: matmul peaks, and the training speed and MFU of two GPTs.

Measures the bf16 and TF32 matmul peaks (GFLOP/s of square matmuls) and the bf16 training tokens/s of the d=768
GPT (12 layers, context 1024, on WikiText-2's vocabulary) and of nanoGPT's baby GPT (d=384, 6 layers, context 256,
Tiny Shakespeare), eager and compiled, with their achieved GFLOP/s as a share of the measured bf16 peak and of the
datasheet's (MFU). The batches are random, so no dataset is needed. Knobs (environment variables) pick fewer
figures: MFU_CASES (d768,baby), MFU_COMPILED (0,1), MFU_BATCHES (each case's own batch if unset), MFU_PADS (the
full head's CUDA output padding, FullHead.cuda_multiple: 1 is the plain matmul; the default's if unset).

    OUT=DIR python benchmarks/gpu_mfu.py [DEVICE=cuda]
    MFU_CASES=d768 MFU_COMPILED=1 MFU_BATCHES=32 MFU_PADS=64,1 python benchmarks/gpu_mfu.py   # the padded head
    MFU_CASES=baby MFU_COMPILED=0 MFU_BATCHES=1 python benchmarks/gpu_mfu.py cpu   # a check on a CPU

Writes OUT/gpu_mfu.json (default ./gpu_mfu.json), rewritten after every figure so a timeout keeps them, and prints
one line per figure. `bash benchmarks/gpu.sh bench` runs it. Takes about 2 minutes on an H100 with every case
(compilation is most of it); the CPU check takes about 3 minutes on 2 cores. `tinylm bench` is the full benchmark.
"""

import json
import os
import sys

import torch

from tinylm.device import configure, pick_device
from tinylm.models.heads import FullHead
from tinylm.speed import BABY_GPT, GPU_GPT, datasheet_bf16_tflops, matmul_peak, train_speed

out_path = os.path.join(os.environ.get("OUT", "."), "gpu_mfu.json")
dev = pick_device(sys.argv[1] if len(sys.argv) > 1 else "cuda")
configure(dev)
name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
report = {"device": name, "torch": torch.__version__, "datasheet_bf16_tflops": datasheet_bf16_tflops(name), "rows": []}


def save() -> None:
    with open(out_path, "w") as f:
        json.dump(report, f, indent=1)


report["matmul_bf16"] = matmul_peak(dev, 3, torch.bfloat16)
report["matmul_tf32"] = matmul_peak(dev, 3)
save()
peak = report["matmul_bf16"]["peak_gflops"]
# Knobs for a short window: MFU_CASES (d768,baby), MFU_COMPILED (0,1), MFU_BATCHES (the cases' own batch if unset),
# MFU_PADS (the full head's CUDA output padding, FullHead.cuda_multiple: 1 is the plain matmul; the default's if unset)
cases = [c for c in (("d768", "wikitext2", GPU_GPT), ("baby", "tinyshakespeare", BABY_GPT))
         if c[0] in os.environ.get("MFU_CASES", "d768,baby").split(",")]
compiled_modes = [m == "1" for m in os.environ.get("MFU_COMPILED", "0,1").split(",")]
batches = [int(b) for b in os.environ.get("MFU_BATCHES", "").split(",") if b] or [None]
pads = [int(m) for m in os.environ.get("MFU_PADS", "").split(",") if m] or [FullHead.cuda_multiple]
runs = [(case, dataset, base, batch, compiled, pad) for case, dataset, base in cases for batch in batches
        for compiled in compiled_modes for pad in pads]
for case, dataset, base, batch, compiled, pad in runs:
    sets = base + ([f"train.batch_size={batch}"] if batch else [])
    FullHead.cuda_multiple = pad
    try:
        row = train_speed("transformer", dataset, "bf16", 10, 3, str(dev), sets, compiled)
        row["mfu_vs_measured_bf16"] = row["achieved_gflops"] / peak
        if report["datasheet_bf16_tflops"]:
            row["mfu_vs_datasheet_bf16"] = row["achieved_gflops"] / (report["datasheet_bf16_tflops"] * 1e3)
    except Exception as e:  # noqa: BLE001
        row = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
    row["case"], row["head_pad_multiple"] = case, pad
    report["rows"].append(row)
    save()
    print(case, batch, compiled, pad, {k: row.get(k) for k in ("achieved_gflops", "mfu_vs_measured_bf16", "error")},
          flush=True)
